"""Ahead-of-time compilation of the fused kernel for the C launcher (``libsoftmask_kernels``).

    python -m softmask.kernels.aot --arch 75,80,87,90 --out DIR [--jobs N]

Compiles every specialisation the launcher needs with ``triton.compile`` (no GPU, no driver) and
writes into DIR:

- ``<symbol>.bin``: one cubin (or PTX text, NUL-terminated) per specialisation and arch, named
  ``sma_split_<dtype>_m<mask dtype>_d<D>[_<variant>]_<sm|ptx><arch>``, e.g.
  ``sma_split_fp16_mfp16_d32_sm90.bin`` (``_mbool_``: hard mode);
- ``softmask_kernels_table.h``: the table's types and the merge constants;
- ``softmask_kernels_table.c``: the images embedded with the assembler's ``.incbin`` (no giant
  hex arrays to compile) and ``softmask_kernel_table[]``: arch, dtypes, head dim, tiles, warps,
  stages, what the row accepts (key padding, S alignment), shared memory, scratch sizes.

Specialisations per cubin arch (sm_80 and newer):
- *fast* (no variant tag, or ``i16``/``i32``): fp16 query/key/value with an fp16 mask, every
  head dim, BLOCK_I 64/16/32, no key padding, S a multiple of 16 (compiled with that divisibility,
  so mask rows are 16-byte aligned and load as vectors); the hard mode (mask dtype ``bool``, one
  byte per key, table value 3) likewise at BLOCK_I 64 only;
- *any* (tag ``any``): every (dtype, mask dtype) of {fp32, fp16} x {fp32, fp16, bool} and head
  dim, BLOCK_I 64, reads a key padding mask when given, any S (element-wise mask loads).
sm_75 and the PTX fallback get the *any* set only. Alpha is always fp32 here (the launcher
converts an fp16 alpha). Query, key, value, mask, output and workspace pointers are compiled as
16-byte aligned; the launcher checks.

PTX for GPUs newer than every cubin: Triton compiles sm_90 as the arch-specific ``sm_90a``, whose
PTX no other GPU can JIT, so the PTX fallback is the one of the newest requested arch below 90.
Every image declares ``PTX_ISA`` (PTX ISA 8.0, CUDA 12.0) instead of the bundled ptxas' newest,
so a driver from CUDA 12.0 on can JIT the fallback.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from softmask.kernels import heuristics

logger = logging.getLogger(__name__)

DTYPES = {"fp32": 0, "fp16": 1}  # values of SoftmaskDtype in softmask_kernels.h
# Mask dtypes: a bool mask (1 byte per key, nonzero = attend) is the hard (Mask2Former) mode; its
# value, 3, extends SoftmaskDtype for masks only (the C header's SOFTMASK_DTYPE_BOOL).
MASK_DTYPES = {**DTYPES, "bool": 3}
ELEM_BYTES = {"fp32": 4, "fp16": 2, "bool": 1}
TRITON_TYPES = {"fp32": "fp32", "fp16": "fp16", "bool": "u8"}
PTX_ISA = 80
SPLIT_PARAMS = (
    15  # non-constexpr parameters of sma_split_kernel, before Triton's two scratch pointers
)
POINTER_PARAMS = (0, 1, 2, 3, 6, 7, 8, 9)  # q, k, v, mask, out, acc, ml, counters: 16-byte aligned
NUM_KEYS_PARAM = 11
DEFAULT_ARCHS = (75, 80, 87, 90)
# The fast hard-mode kernels come in one query tile only (each costs build time): Mask2Former and
# OneFormer run 100 to 200 queries; fewer take it too (rows past I are clamped and dropped).
HARD_FAST_BLOCK_I = 64
# Largest dynamic shared memory one CTA may use (bytes), by compute capability. sm_80 cubins also
# serve 8.6 and 8.9 GPUs (their own cubins are not built by default), so they keep to 99 KiB.
MAX_SHARED_PER_CTA = {75: 64 << 10, 80: 99 << 10, 86: 99 << 10, 87: 163 << 10, 89: 99 << 10}
MAX_SHARED_DEFAULT = 227 << 10


@dataclass(frozen=True)
class Variant:
    """One kernel specialisation for one arch (``ptx``: emit PTX instead of a cubin).

    ``general``: reads a key padding mask when given and takes any S; otherwise unpadded calls with
    S % 16 == 0 only. ``mask_dtype`` "bool" is the hard mode.
    """

    arch: int
    dtype: str
    mask_dtype: str
    head_dim: int
    block_i: int
    general: bool
    ptx: bool = False

    @property
    def hard(self) -> bool:
        return self.mask_dtype == "bool"

    @property
    def tag(self) -> str:
        if self.general:
            return "_any"
        return "" if self.block_i == 64 else f"_i{self.block_i}"

    @property
    def symbol(self) -> str:
        target = "ptx" if self.ptx else "sm"
        return (
            f"sma_split_{self.dtype}_m{self.mask_dtype}_d{self.head_dim}{self.tag}_"
            f"{target}{self.arch}"
        )

    @property
    def key_align(self) -> int:
        return 1 if self.general else heuristics.KEY_ALIGN

    @property
    def block_s(self) -> int:
        return heuristics.block_s_for(
            self.head_dim, aligned=not self.general, elem=ELEM_BYTES[self.dtype]
        )

    @property
    def num_warps(self) -> int:
        return heuristics.num_warps_for(self.block_i)

    @property
    def num_stages(self) -> int:
        return heuristics.num_stages_for(
            self.arch,
            self.block_i,
            self.block_s,
            self.head_dim,
            ELEM_BYTES[self.dtype],
            ELEM_BYTES[self.mask_dtype],
        )

    @property
    def precision(self) -> str:
        return heuristics.dot_precision(ELEM_BYTES[self.dtype], self.arch)


def _compile(variant: Variant) -> dict:
    """Compile one variant; returns its table row and image bytes."""
    os.environ.setdefault("TRITON_DISABLE_LINE_INFO", "1")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from softmask.kernels.triton_kernels import LOG2E, sma_split_kernel

    v = variant
    signature = {
        "q_ptr": f"*{v.dtype}",
        "k_ptr": f"*{v.dtype}",
        "v_ptr": f"*{v.dtype}",
        "mask_ptr": f"*{TRITON_TYPES[v.mask_dtype]}",
        "alpha_ptr": "*fp32",
        "kpm_ptr": "*u8",
        "out_ptr": f"*{v.dtype}",
        "acc_ptr": "*fp32",
        "ml_ptr": "*fp32",
        "counter_ptr": "*i32",
        "num_queries": "i32",
        "num_keys": "i32",
        "num_heads": "i32",
        "num_splits": "i32",
        "has_padding": "i32",
        "HEAD_DIM": "constexpr",
        "BLOCK_I": "constexpr",
        "BLOCK_S": "constexpr",
        "QK_SCALE_LOG2": "constexpr",
        "DOT_PRECISION": "constexpr",
        "PADDING": "constexpr",
        "DOT_IN_FP32": "constexpr",
        "HARD": "constexpr",
    }
    constexprs = {
        "HEAD_DIM": v.head_dim,
        "BLOCK_I": v.block_i,
        "BLOCK_S": v.block_s,
        "QK_SCALE_LOG2": LOG2E / math.sqrt(v.head_dim),
        "DOT_PRECISION": v.precision,
        "PADDING": v.general,
        "DOT_IN_FP32": False,
        "HARD": v.hard,
    }
    attrs = {(i,): [["tt.divisibility", 16]] for i in POINTER_PARAMS}
    if not v.general:
        attrs[(NUM_KEYS_PARAM,)] = [["tt.divisibility", heuristics.KEY_ALIGN]]
    compiled = triton.compile(
        ASTSource(sma_split_kernel, signature, constexprs, attrs),
        target=GPUTarget("cuda", v.arch, 32),
        options={
            "num_warps": v.num_warps,
            "num_stages": v.num_stages,
            "ptx_version": PTX_ISA,
            "enable_fp_fusion": True,
        },
    )
    md = compiled.metadata
    ptx = compiled.asm["ptx"]
    entry = ptx[ptx.index(".entry") :]
    entry = entry[: entry.index(")")]
    declared = entry.count(".param")
    if declared != SPLIT_PARAMS + 2:
        raise RuntimeError(
            f"{v.symbol}: PTX entry has {declared} parameters, expected {SPLIT_PARAMS} + 2 "
            "scratch pointers: the launcher's argument list would be wrong"
        )
    limit = MAX_SHARED_PER_CTA.get(v.arch, MAX_SHARED_DEFAULT)
    if md.shared > limit:
        raise RuntimeError(
            f"{v.symbol}: needs {md.shared} bytes of shared memory, sm_{v.arch} allows {limit} "
            f"per CTA (BLOCK_I={v.block_i}, BLOCK_S={v.block_s}, num_stages={v.num_stages})"
        )
    image = (ptx.encode() + b"\0") if v.ptx else compiled.asm["cubin"]
    return {
        "variant": v,
        "name": md.name,
        "num_warps": md.num_warps,
        "shared": md.shared,
        "gscratch": md.global_scratch_size,
        "gscratch_align": md.global_scratch_align,
        "pscratch": md.profile_scratch_size,
        "pscratch_align": md.profile_scratch_align,
        "image": image,
    }


def variants(archs: list[int]) -> list[Variant]:
    """Every specialisation the launcher looks up, for each arch, plus the PTX fallback set."""
    ptx_candidates = [a for a in archs if a < 90]
    ptx_arch = max(ptx_candidates) if ptx_candidates else None
    out = []
    targets = [(a, False) for a in archs] + ([(ptx_arch, True)] if ptx_arch else [])
    for arch, ptx in targets:
        for head_dim in heuristics.HEAD_DIMS:
            if arch >= 80 and not ptx:
                for block_i in heuristics.BLOCK_IS:
                    if block_i == heuristics.block_i_for(block_i, head_dim):
                        out.append(Variant(arch, "fp16", "fp16", head_dim, block_i, False))
                out.append(Variant(arch, "fp16", "bool", head_dim, HARD_FAST_BLOCK_I, False))
            for dtype in DTYPES:
                for mask_dtype in MASK_DTYPES:
                    out.append(Variant(arch, dtype, mask_dtype, head_dim, 64, True, ptx))
    return out


HEADER = """\
/* Generated by softmask.kernels.aot: do not edit. Table of the AOT-compiled fused kernels. */
#ifndef SOFTMASK_KERNELS_TABLE_H
#define SOFTMASK_KERNELS_TABLE_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
/* Fused merge (softmask/kernels/triton_kernels.py): int32 counters per (b, h, query tile). */
#define SOFTMASK_MERGE_GROUP @MERGE_GROUP@
#define SOFTMASK_MAX_MERGE_GROUPS @MAX_MERGE_GROUPS@
typedef struct SoftmaskKernelEntry {
    int32_t arch;           /* compute capability * 10 + minor, e.g. 87 */
    int32_t is_ptx;         /* 1: image is NUL-terminated PTX (JIT, any newer GPU) */
    int32_t dtype;          /* SoftmaskDtype of query/key/value/output */
    int32_t mask_dtype;     /* SoftmaskDtype of mask; 3 = bool, 1 byte per key: hard mode */
    int32_t head_dim;
    int32_t block_i;        /* query rows per program */
    int32_t block_s;        /* keys per main-loop iteration */
    int32_t num_warps;      /* block = 32 * num_warps threads */
    int32_t num_stages;     /* software-pipeline depth it was compiled with */
    int32_t padding;        /* 1: reads key_padding_mask when has_padding != 0; 0: never */
    int32_t key_align;      /* usable only when S % key_align == 0 */
    int32_t shared_bytes;   /* dynamic shared memory */
    int32_t num_params;     /* kernel parameters before the two scratch pointers */
    int32_t global_scratch_size, global_scratch_align;   /* bytes per program */
    int32_t profile_scratch_size, profile_scratch_align;
    const char* name;       /* entry point in the image */
    const unsigned char* image;
} SoftmaskKernelEntry;
extern const SoftmaskKernelEntry softmask_kernel_table[];
extern const size_t softmask_kernel_table_size;
/* Byte size of the image of table row index (0 past the end). */
size_t softmask_kernel_image_size(size_t index);
#ifdef __cplusplus
}
#endif
#endif
"""


def _incbin(symbol: str, path: Path) -> str:
    # .incbin keeps multi-megabyte images out of the C compiler; section and alignment are ELF's.
    return (
        f'__asm__(".section .rodata\\n.balign 16\\n.global {symbol}\\n{symbol}:\\n'
        f'.incbin \\"{path.as_posix()}\\"\\n.global {symbol}_end\\n{symbol}_end:\\n.previous\\n");\n'
        f"extern const unsigned char {symbol}[], {symbol}_end[];\n"
    )


def write_outputs(rows: list[dict], out_dir: Path) -> None:
    from softmask.kernels.triton_kernels import MAX_MERGE_GROUPS, MERGE_GROUP

    out_dir.mkdir(parents=True, exist_ok=True)
    header = HEADER.replace("@MERGE_GROUP@", str(int(MERGE_GROUP))).replace(
        "@MAX_MERGE_GROUPS@", str(int(MAX_MERGE_GROUPS))
    )
    (out_dir / "softmask_kernels_table.h").write_text(header)
    decls, entries = [], []
    for row in rows:
        v: Variant = row["variant"]
        path = (out_dir / f"{v.symbol}.bin").resolve()
        path.write_bytes(row["image"])
        sym = f"softmask_image_{v.symbol}"
        decls.append(_incbin(sym, path))
        entries.append(
            f"    {{{v.arch}, {int(v.ptx)}, {DTYPES[v.dtype]}, {MASK_DTYPES[v.mask_dtype]}, "
            f"{v.head_dim}, {v.block_i}, {v.block_s}, {row['num_warps']}, {v.num_stages}, "
            f"{int(v.general)}, {v.key_align}, {row['shared']}, {SPLIT_PARAMS}, "
            f"{row['gscratch']}, {row['gscratch_align']}, {row['pscratch']}, "
            f'{row["pscratch_align"]}, "{row["name"]}", {sym}}},'
        )
    body = [
        "/* Generated by softmask.kernels.aot: do not edit. */",
        '#include "softmask_kernels_table.h"',
        *decls,
        "const SoftmaskKernelEntry softmask_kernel_table[] = {",
        *entries,
        "};",
        "const size_t softmask_kernel_table_size = "
        + "sizeof(softmask_kernel_table) / sizeof(softmask_kernel_table[0]);",
        "/* Byte size of each image, in table order. */",
        "size_t softmask_kernel_image_size(size_t index) {",
        "    static const unsigned char* const ends[][2] = {",
        *[
            f"        {{softmask_image_{r['variant'].symbol}, "
            f"softmask_image_{r['variant'].symbol}_end}},"
            for r in rows
        ],
        "    };",
        (
            "    return index < sizeof(ends) / sizeof(ends[0]) "
            "? (size_t)(ends[index][1] - ends[index][0]) : 0;"
        ),
        "}",
    ]
    (out_dir / "softmask_kernels_table.c").write_text("\n".join(body) + "\n")


def compile_all(todo: list[Variant], jobs: int) -> list[dict]:
    """Compile variants in ``jobs`` processes, slowest (sm_75, fp32) first; keeps ``todo``'s order."""
    order = sorted(range(len(todo)), key=lambda i: (todo[i].arch >= 80, todo[i].dtype != "fp32"))
    rows: list[dict | None] = [None] * len(todo)
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_compile, todo[i]): i for i in order}
        for future in concurrent.futures.as_completed(futures):
            rows[futures[future]] = future.result()
    return rows  # type: ignore[return-value]


def generate(archs: list[int], out_dir: Path, jobs: int = 2) -> list[dict]:
    """Compile all variants for ``archs`` into ``out_dir``; returns the table rows."""
    todo = variants(archs)
    start = time.perf_counter()
    rows = compile_all(todo, jobs)
    write_outputs(rows, out_dir)
    logger.info(
        "compiled %d kernels for sm %s in %.1f s", len(rows), archs, time.perf_counter() - start
    )
    return rows


def parse_archs(text: str) -> list[int]:
    """'75,80,87,90' -> [75, 80, 87, 90]; ValueError on anything else or an arch below 75."""
    try:
        archs = sorted({int(a) for a in text.split(",") if a.strip()})
    except ValueError as exc:
        raise ValueError(
            f"--arch must be comma-separated integers such as 80,90, got {text!r}"
        ) from exc
    if not archs or any(a < 75 for a in archs):
        raise ValueError(f"--arch: the kernel needs sm_75 or newer, got {text!r}")
    return archs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch",
        default=",".join(str(a) for a in DEFAULT_ARCHS),
        help="comma-separated compute capabilities (x10), e.g. 75,80,87,90",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--jobs", type=int, default=min(4, os.cpu_count() or 1), help="parallel compiler processes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        archs = parse_archs(args.arch)
    except ValueError as exc:
        parser.error(str(exc))
    generate(archs, args.out, args.jobs)


if __name__ == "__main__":
    main()
