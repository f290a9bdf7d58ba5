"""Static reading of compiled kernels (SASS): the main loop and what it issues per key.

Used by ``benchmarks/kernel_sass.py`` as a roofline proxy without a GPU. Input is the text of
``nvdisasm -c <cubin>`` (the disassembler shipped with Triton); no GPU or driver is needed.

How the main loop is found (the method, so the numbers can be checked by hand):

1. The function's instructions are cut into basic blocks at branch targets (``.L_x_N:`` labels)
   and after every branch/exit. Edges: a ``BRA`` goes to its label (and falls through when it is
   predicated); ``EXIT``/``RET`` end a path (a predicated one falls through); other instructions
   fall through.
2. Dominators are computed on that graph; an edge ``u -> v`` where ``v`` dominates ``u`` is a
   back edge and defines the natural loop of header ``v`` (every block that reaches ``u`` without
   passing ``v``). Loops sharing a header are one loop.
3. The main loop is the loop holding the most tensor-core instructions (``HMMA``/``HGMMA``), the
   innermost one on a tie. A kernel without tensor-core instructions (fp32 IEEE dots are FMAs)
   falls back to the loop with the most instructions, and the report says so.
4. Keys per iteration are *derived from the code*, not assumed: the multiply-accumulates of the
   loop's MMA instructions (``HMMA.16816`` = 16x8x16 per warp, ``HMMA.1688`` = 16x8x8,
   ``HGMMA.64xNx16`` = 64xNx16 per warpgroup of 4 warps) times the CTA's warps, divided by the
   two products' work per key, ``2 * BLOCK_I * D``. A derived count that is not a whole multiple
   of BLOCK_S means the loop is not one pass over key tiles, and the report flags it.

The counts are static: every instruction of the loop body is counted once per iteration (a
branch inside the body would make that an upper bound; the report gives the body's block count).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Za-z0-9_.]*)\s*([^;]*);")
_LABEL = re.compile(r"^\s*(\.L_x_\d+|\.L_\d+):")
_TARGET = re.compile(r"`\((\.L_x_\d+|\.L_\d+)\)")
_HMMA_SHAPE = re.compile(r"^HMMA\.(\d+)")
_HGMMA_SHAPE = re.compile(r"^HGMMA\.(\d+)x(\d+)x(\d+)")


@dataclass
class Instr:
    address: int
    predicate: str
    opcode: str  # with modifiers, e.g. LDG.E.128
    operands: str

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]


@dataclass
class Block:
    index: int
    instrs: list[Instr] = field(default_factory=list)
    succ: list[int] = field(default_factory=list)


@dataclass
class LoopStats:
    """What one loop body issues per iteration (per warp: SASS is executed per warp)."""

    instructions: int
    blocks: int
    mma: int
    mma_macs_per_warp: int
    global_loads: dict[int, int]  # width in bits -> count (LDG)
    async_copies: dict[int, int]  # width in bits -> count (LDGSTS = cp.async)
    tma_loads: int  # UTMALDG / UBLKCP (TMA)
    shared_loads: int  # LDS, LDSM
    local_memory: int  # LDL + STL inside the loop (spills)
    exp2: int  # MUFU.EX2
    barriers: int  # BAR.*
    nested_loops: int


@dataclass
class KernelSass:
    name: str
    instructions: int
    loops: int
    main_loop: LoopStats | None
    method: str  # how the main loop was chosen


def parse(text: str) -> list[Instr | str]:
    """Instructions and labels of ``nvdisasm -c`` text, in address order (labels as strings)."""
    out: list[Instr | str] = []
    for line in text.splitlines():
        label = _LABEL.match(line)
        if label:
            out.append(label.group(1))
            continue
        m = _INSTR.search(line)
        if m:
            pred = (m.group(2) or "").strip()
            out.append(Instr(int(m.group(1), 16), pred, m.group(3), m.group(4).strip()))
    return out


def _is_branch(ins: Instr) -> bool:
    return ins.base in {"BRA", "BRX", "JMP", "JMX", "EXIT", "RET", "BREAK", "KILL"}


def build_cfg(items: list[Instr | str]) -> list[Block]:
    """Basic blocks with successor edges (see the module docstring)."""
    blocks: list[Block] = []
    label_block: dict[str, int] = {}
    current: Block | None = None
    for item in items:
        if isinstance(item, str):
            if current is None or current.instrs:
                current = Block(len(blocks))
                blocks.append(current)
            label_block[item] = current.index
            continue
        if current is None:
            current = Block(len(blocks))
            blocks.append(current)
        current.instrs.append(item)
        if _is_branch(item):
            current = None
    for i, blk in enumerate(blocks):
        if not blk.instrs:
            if i + 1 < len(blocks):
                blk.succ.append(i + 1)
            continue
        last = blk.instrs[-1]
        falls_through = True
        if _is_branch(last):
            target = _TARGET.search(last.operands)
            if last.base == "BRA" and target and target.group(1) in label_block:
                blk.succ.append(label_block[target.group(1)])
            elif last.base in {"BRX", "JMX", "JMP"}:
                # Indirect: every labelled block may be a target (conservative).
                blk.succ.extend(sorted(set(label_block.values())))
            falls_through = bool(last.predicate) and last.predicate not in ("@PT", "@UPT")
        if falls_through and i + 1 < len(blocks):
            blk.succ.append(i + 1)
        blk.succ = sorted(set(blk.succ))
    return blocks


def _dominators(blocks: list[Block]) -> list[set[int]]:
    n = len(blocks)
    preds: list[set[int]] = [set() for _ in range(n)]
    for b in blocks:
        for s in b.succ:
            preds[s].add(b.index)
    everything = set(range(n))
    dom = [everything.copy() for _ in range(n)]
    dom[0] = {0}
    changed = True
    while changed:
        changed = False
        for i in range(1, n):
            ps = [dom[p] for p in preds[i]]
            new = (set.intersection(*ps) if ps else set()) | {i}
            if new != dom[i]:
                dom[i], changed = new, True
    return dom


def natural_loops(blocks: list[Block]) -> dict[int, set[int]]:
    """Header block -> the blocks of its natural loop (back edges sharing a header merged)."""
    dom = _dominators(blocks)
    preds: list[set[int]] = [set() for _ in blocks]
    for b in blocks:
        for s in b.succ:
            preds[s].add(b.index)
    loops: dict[int, set[int]] = {}
    for b in blocks:
        for s in b.succ:
            if s in dom[b.index]:  # back edge b -> s
                body = loops.setdefault(s, {s})
                stack = [b.index]
                while stack:
                    x = stack.pop()
                    if x not in body:
                        body.add(x)
                        stack.extend(preds[x])
    return loops


def mma_macs_per_warp(ins: Instr) -> int:
    """Multiply-accumulates one warp contributes by executing this MMA instruction (0 if none)."""
    m = _HMMA_SHAPE.match(ins.opcode)
    if m:
        shape = m.group(1)
        known = {"16816": 16 * 8 * 16, "1688": 16 * 8 * 8, "884": 8 * 8 * 4, "16832": 16 * 8 * 32}
        if shape not in known:
            raise ValueError(f"unknown HMMA shape {ins.opcode}")
        return known[shape]
    m = _HGMMA_SHAPE.match(ins.opcode)
    if m:
        mm, nn, kk = (int(g) for g in m.groups())
        return mm * nn * kk // 4  # one warpgroup (4 warps) executes it together
    return 0


def _width_bits(opcode: str) -> int:
    """Access width of a load/copy opcode: .U8/.S8 8, .U16/.S16 16, none 32, .64 64, .128 128."""
    mods = opcode.split(".")[1:]
    for mod, bits in (("128", 128), ("64", 64), ("U16", 16), ("S16", 16), ("U8", 8), ("S8", 8)):
        if mod in mods:
            return bits
    return 32


def loop_stats(blocks: list[Block], body: set[int], nested: int) -> LoopStats:
    instrs = [ins for i in sorted(body) for ins in blocks[i].instrs]
    loads: dict[int, int] = {}
    copies: dict[int, int] = {}
    for ins in instrs:
        if ins.base == "LDG":
            w = _width_bits(ins.opcode)
            loads[w] = loads.get(w, 0) + 1
        elif ins.base == "LDGSTS":
            w = _width_bits(ins.opcode)
            copies[w] = copies.get(w, 0) + 1
    return LoopStats(
        instructions=len(instrs),
        blocks=len(body),
        mma=sum(1 for i in instrs if mma_macs_per_warp(i)),
        mma_macs_per_warp=sum(mma_macs_per_warp(i) for i in instrs),
        global_loads=dict(sorted(loads.items())),
        async_copies=dict(sorted(copies.items())),
        tma_loads=sum(1 for i in instrs if i.base in {"UTMALDG", "UBLKCP"}),
        shared_loads=sum(1 for i in instrs if i.base in {"LDS", "LDSM"}),
        local_memory=sum(1 for i in instrs if i.base in {"LDL", "STL"}),
        exp2=sum(1 for i in instrs if i.opcode.startswith("MUFU.EX2")),
        barriers=sum(1 for i in instrs if i.base == "BAR"),
        nested_loops=nested,
    )


def analyse(text: str, name: str = "") -> KernelSass:
    """Find the main loop of the one function in ``nvdisasm -c`` text (see the module docstring)."""
    items = parse(text)
    instrs = [i for i in items if isinstance(i, Instr)]
    if not instrs:
        raise ValueError(f"{name}: no SASS instructions found in the disassembly")
    blocks = build_cfg(items)
    loops = natural_loops(blocks)

    def mma_count(body: set[int]) -> int:
        return sum(1 for i in body for ins in blocks[i].instrs if mma_macs_per_warp(ins))

    def size(body: set[int]) -> int:
        return sum(len(blocks[i].instrs) for i in body)

    main, method = None, "no loop"
    with_mma = {h: b for h, b in loops.items() if mma_count(b) > 0}
    if with_mma:
        main = max(with_mma, key=lambda h: (mma_count(with_mma[h]), -size(with_mma[h])))
        method = "loop with the most MMA instructions"
    elif loops:
        main = max(loops, key=lambda h: size(loops[h]))
        method = "largest loop (no MMA instruction in any loop)"
    stats = None
    if main is not None:
        body = loops[main]
        nested = sum(1 for h, b in loops.items() if h != main and b < body)
        stats = loop_stats(blocks, body, nested)
    return KernelSass(name, len(instrs), len(loops), stats, method)


def keys_per_iteration(stats: LoopStats, num_warps: int, block_i: int, head_dim: int) -> float:
    """Keys one loop iteration covers, from its MMA work: q.k and p.v are BLOCK_I*D MACs per key."""
    return stats.mma_macs_per_warp * num_warps / (2 * block_i * head_dim)


def parse_resource_usage(text: str) -> dict[str, int]:
    """REG, STACK, SHARED, LOCAL of the one function in ``cuobjdump -res-usage`` output."""
    out = {}
    for key in ("REG", "STACK", "SHARED", "LOCAL"):
        m = re.search(rf"\b{key}:(\d+)", text.split("Function", 1)[-1])
        if m is None:
            raise ValueError(f"cuobjdump -res-usage output has no {key}: field")
        out[key] = int(m.group(1))
    return out


def triton_tool(name: str) -> Path:
    """Path of a CUDA binary tool shipped with Triton's NVIDIA backend (nvdisasm, cuobjdump)."""
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if not path.exists():
        raise FileNotFoundError(
            f"{name} not found at {path} (it ships with Triton's NVIDIA backend)"
        )
    return path


def disassemble(cubin: bytes) -> tuple[str, dict[str, int]]:
    """(``nvdisasm -c`` text, ``cuobjdump -res-usage`` fields) of one cubin image."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        text = subprocess.run(
            [str(triton_tool("nvdisasm")), "-c", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        usage = subprocess.run(
            [str(triton_tool("cuobjdump")), "-res-usage", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return text, parse_resource_usage(usage)
