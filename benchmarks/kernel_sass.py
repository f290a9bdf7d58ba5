"""Static SASS report of the AOT kernels: a roofline proxy that needs no GPU.

    python benchmarks/kernel_sass.py --arch 87,90 [--out benchmarks/results] [--jobs 2]
    python benchmarks/kernel_sass.py --cubin K.bin --tiles 64,128,4,32 [--tiles-passes 1]

Compiles the cubins the C launcher embeds (``softmask.kernels.aot``, same specialisations and
options) for the given archs, disassembles each with the ``nvdisasm``/``cuobjdump`` that ship with
Triton, and prints per kernel: registers, stack, shared memory, the main loop's instructions per
key per head, its global loads by width (scalar 16-bit vs vector), asynchronous copies (cp.async =
LDGSTS, TMA), shared loads, local-memory traffic. How the main loop is found and why the per-key
figure is trustworthy: ``softmask/kernels/sass.py`` (natural loops of the control-flow graph; keys
per iteration derived from the loop's tensor-core work, cross-checked against BLOCK_S).

Goals (issue 12) for the fast fp16 D = 32 kernels (fp16 mask, every BLOCK_I) on sm_87 and sm_90:
no stack, no scalar 16-bit global loads in the main loop, asynchronous copies in the main loop,
<= 6.0 main-loop instructions per key per head on sm_90. The exit status is 1 when one fails.

``--cubin`` reads given cubins instead (e.g. an older build's), all with the tiles
``BLOCK_I,BLOCK_S,num_warps,D``. Writes ``<out>/<prefix>_<host>_<UTC date-time>.{json,md}``
(prefix ``kernel_sass`` unless ``--prefix``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import platform
import sys
from dataclasses import asdict
from pathlib import Path

from results_io import write_results

from softmask.kernels import aot, heuristics, sass

logger = logging.getLogger("kernel_sass")

GOAL_INSTRUCTIONS_PER_KEY = 6.0
GOAL_ARCHS = (87, 90)


def read_cubin(
    image: bytes, label: str, block_i: int, block_s: int, warps: int, head_dim: int, passes: int = 1
) -> dict:
    """Disassemble one cubin and measure it; ``passes``: tensor-core passes per product."""
    dis, usage = sass.disassemble(image)
    kernel = sass.analyse(dis, label)
    row = {
        "kernel": label,
        "registers": usage["REG"],
        "stack": usage["STACK"],
        "block_i": block_i,
        "block_s": block_s,
        "num_warps": warps,
        "head_dim": head_dim,
        "instructions": kernel.instructions,
        "loops": kernel.loops,
        "method": kernel.method,
    }
    loop = kernel.main_loop
    if loop is None:
        row["problem"] = "no loop found"
        return row
    row["loop"] = asdict(loop)
    if loop.mma:
        keys = sass.keys_per_iteration(loop, warps, block_i, head_dim) / passes
        row["keys_per_iteration"] = keys
        if abs(keys / block_s - round(keys / block_s)) > 1e-6 or round(keys / block_s) < 1:
            row["problem"] = (
                f"the loop's MMA work covers {keys:g} keys, not a multiple of BLOCK_S={block_s}"
            )
    else:
        keys = float(block_s)
        row["keys_per_iteration"] = keys
        row["problem"] = (
            "no tensor-core instruction in any loop: keys per iteration assumed BLOCK_S"
        )
    row["instructions_per_key_per_head"] = loop.instructions / keys
    row["scalar_16bit_loads"] = loop.global_loads.get(16, 0)
    row["vector_loads"] = loop.global_loads.get(64, 0) + loop.global_loads.get(128, 0)
    row["async_copies"] = sum(loop.async_copies.values()) + loop.tma_loads
    return row


def compile_rows(archs: list[int], jobs: int) -> list[dict]:
    todo = [v for v in aot.variants(archs) if not v.ptx]
    compiled = aot.compile_all(todo, jobs)
    rows = []
    for c in compiled:
        v: aot.Variant = c["variant"]
        row = read_cubin(
            c["image"],
            v.symbol,
            v.block_i,
            v.block_s,
            v.num_warps,
            v.head_dim,
            heuristics.dot_passes(v.precision),
        )
        row.update(
            arch=v.arch,
            dtype=v.dtype,
            mask_dtype=v.mask_dtype,
            general=v.general,
            num_stages=v.num_stages,
            shared=c["shared"],
            precision=v.precision,
        )
        rows.append(row)
        logger.info("%s: %s", v.symbol, summary(row))
    return rows


def summary(row: dict) -> str:
    ipk = row.get("instructions_per_key_per_head")
    return (
        f"REG {row['registers']} STACK {row['stack']} instr/key/head {ipk:.2f}"
        if ipk is not None
        else "no main loop"
    )


def goal_checks(rows: list[dict]) -> list[dict]:
    """The four static goals, per fast fp16 D=32 kernel on sm_87/sm_90."""
    checks = []
    for r in rows:
        if (
            r.get("arch") not in GOAL_ARCHS
            or r.get("general")
            or r.get("dtype") != "fp16"
            or r.get("mask_dtype") != "fp16"
            or r["head_dim"] != 32
        ):
            continue
        loop = r.get("loop") or {}
        goals = {
            "no stack": r["stack"] == 0,
            "no scalar 16-bit global loads in the main loop": r.get("scalar_16bit_loads", 1) == 0,
            "asynchronous copies in the main loop": r.get("async_copies", 0) > 0,
        }
        if r["arch"] == 90:
            goals[f"<= {GOAL_INSTRUCTIONS_PER_KEY} main-loop instructions per key per head"] = (
                r.get("instructions_per_key_per_head", 1e9) <= GOAL_INSTRUCTIONS_PER_KEY
            )
        goals["main loop identified (no problem flagged)"] = "problem" not in r and bool(loop)
        for goal, ok in goals.items():
            checks.append({"kernel": r["kernel"], "goal": goal, "ok": ok})
    return checks


def _fmt_loads(loads: dict) -> str:
    return " ".join(f"{n}x{w}b" for w, n in sorted(loads.items(), key=lambda kv: int(kv[0]))) or "0"


def markdown(report: dict) -> str:
    lines = [
        f"# Static SASS report: sm {', '.join(map(str, report['archs']))}",
        "",
        (
            f"{report['date']} · host {report['host']} · triton {report['triton']} · "
            "static counts from the cubins (nvdisasm), no GPU involved: a model of the issue "
            "cost, not a measurement."
        ),
        "",
        "Main loop: the natural loop of the CFG with the most tensor-core instructions; keys per",
        "iteration from its MMA work (`softmask/kernels/sass.py`). Counts are per warp per",
        'iteration; "instr/key/head" divides by the keys one iteration covers (one head per',
        "program). Loads: `NxWb` = N global loads of W bits per thread per iteration.",
        "",
        (
            "| kernel | sm | BLOCK_I x BLOCK_S | warps | stages | REG | stack | smem B | "
            "loop blocks | loop instr | instr/key/head | LDG in loop | LDGSTS in loop | "
            "LDS/LDSM | local | MMA | problem |"
        ),
        "|" + " --- |" * 17,
    ]
    for r in report["kernels"]:
        loop = r.get("loop") or {}
        ipk = r.get("instructions_per_key_per_head")
        lines.append(
            f"| {r['kernel']} | {r.get('arch', '')} | {r['block_i']} x {r['block_s']} | "
            f"{r['num_warps']} | {r.get('num_stages', '')} | {r['registers']} | {r['stack']} | "
            f"{r.get('shared', '')} | {loop.get('blocks', '')} | {loop.get('instructions', '')} | "
            f"{'' if ipk is None else f'{ipk:.2f}'} | {_fmt_loads(loop.get('global_loads', {}))} | "
            f"{_fmt_loads(loop.get('async_copies', {}))} | {loop.get('shared_loads', '')} | "
            f"{loop.get('local_memory', '')} | {loop.get('mma', '')} | {r.get('problem', '')} |"
        )
    if report["goals"]:
        lines += [
            "",
            "## Goals (fast fp16 D=32 kernels, sm_87 and sm_90)",
            "",
            "| kernel | goal | met |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {g['kernel']} | {g['goal']} | {'yes' if g['ok'] else 'NO'} |"
            for g in report["goals"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="87,90", help="compute capabilities, e.g. 87,90")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compiler processes")
    parser.add_argument(
        "--cubin", type=Path, nargs="+", help="read these cubins instead of compiling"
    )
    parser.add_argument("--tiles", help="with --cubin: BLOCK_I,BLOCK_S,num_warps,D (all of them)")
    parser.add_argument("--prefix", default="kernel_sass", help="result file name prefix")
    parser.add_argument(
        "--tiles-passes",
        type=int,
        default=1,
        help="with --cubin: tensor-core passes per product (3 for tf32x3)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import triton

    if args.cubin:
        if not args.tiles:
            parser.error("--cubin needs --tiles BLOCK_I,BLOCK_S,num_warps,D")
        block_i, block_s, warps, head_dim = (int(x) for x in args.tiles.split(","))
        rows = [
            read_cubin(
                path.read_bytes(), path.stem, block_i, block_s, warps, head_dim, args.tiles_passes
            )
            for path in args.cubin
        ]
        archs = []
    else:
        try:
            archs = aot.parse_archs(args.arch)
        except ValueError as exc:
            parser.error(str(exc))
        rows = compile_rows(archs, args.jobs)
    now = dt.datetime.now(dt.timezone.utc)
    report = {
        "date": now.isoformat(timespec="seconds"),
        "host": platform.node(),
        "triton": triton.__version__,
        "archs": archs,
        "kernels": rows,
        "goals": goal_checks(rows),
    }
    text = markdown(report)
    sys.stdout.write(text)
    if not args.no_write:
        write_results(args.out, args.prefix, platform.node(), now, report, markdown)
    failed = [g for g in report["goals"] if not g["ok"]]
    for g in failed:
        logger.error("goal not met: %s: %s", g["kernel"], g["goal"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
