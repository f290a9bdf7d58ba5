"""Ahead-of-time compilation of the fused kernel for the C launcher (``libsoftmask_kernels``).

    python -m softmask.kernels.aot --arch 75,80,86,87,89,90 --out DIR [--jobs N]

Compiles every specialisation the launcher needs with ``triton.compile`` (no GPU, no driver) and
writes into DIR:

- ``<entry>.bin``: one cubin (or PTX text, NUL-terminated) per kernel specialisation and arch;
- ``softmask_kernels_table.h``: the table's types;
- ``softmask_kernels_table.c``: the images embedded with the assembler's ``.incbin`` (no giant
  hex arrays to compile) and the table ``softmask_kernel_table[]``: arch, kind (split/merge),
  dtype, mask dtype, head dim, block sizes, num_warps, dynamic shared memory, and the two scratch
  buffers Triton's calling convention appends to every entry point.

Specialisations: query/key/value/output dtype and mask dtype in {fp32, fp16} (what the TensorRT
plugin accepts), head dims 16/32/64/128, BLOCK_I = 64, BLOCK_S per ``heuristics.block_s_for``.
Alpha is always fp32 here (the launcher converts an fp16 alpha). Pointers to query, key, value,
mask, output and the workspace are compiled as 16-byte aligned (vector loads); the launcher checks.

PTX for GPUs newer than every cubin: Triton compiles sm_90 as the arch-specific ``sm_90a``, whose
PTX no other GPU can JIT, so the PTX fallback is the one of the newest requested arch below 90.
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

AOT_BLOCK_I = 64
DTYPES = {"fp32": 0, "fp16": 1}  # values of SoftmaskDtype in softmask_kernels.h
KIND_SPLIT, KIND_MERGE = 0, 1
SPLIT_PARAMS = (
    14  # non-constexpr parameters of sma_split_kernel, before Triton's two scratch pointers
)
MERGE_PARAMS = 6


@dataclass(frozen=True)
class Variant:
    """One kernel specialisation for one arch (``ptx``: emit PTX instead of a cubin)."""

    arch: int
    kind: int
    dtype: str
    mask_dtype: str
    head_dim: int
    ptx: bool = False

    @property
    def symbol(self) -> str:
        kind = "split" if self.kind == KIND_SPLIT else "merge"
        target = "ptx" if self.ptx else "sm"
        return f"sma_{kind}_{self.dtype}_m{self.mask_dtype}_d{self.head_dim}_{target}{self.arch}"


def _aligned(indices: list[int]) -> dict:
    return {(i,): [["tt.divisibility", 16]] for i in indices}


def _compile(variant: Variant) -> dict:
    """Compile one variant; returns its table row and image bytes."""
    os.environ.setdefault("TRITON_DISABLE_LINE_INFO", "1")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from softmask.kernels.triton_kernels import LOG2E, sma_merge_kernel, sma_split_kernel

    block_s = heuristics.block_s_for(variant.head_dim)
    if variant.kind == KIND_SPLIT:
        signature = {
            "q_ptr": f"*{variant.dtype}",
            "k_ptr": f"*{variant.dtype}",
            "v_ptr": f"*{variant.dtype}",
            "mask_ptr": f"*{variant.mask_dtype}",
            "alpha_ptr": "*fp32",
            "kpm_ptr": "*u8",
            "acc_ptr": "*fp32",
            "ml_ptr": "*fp32",
            "num_queries": "i32",
            "num_keys": "i32",
            "num_heads": "i32",
            "num_splits": "i32",
            "tiles_per_split": "i32",
            "has_padding": "i32",
            "HEAD_DIM": "constexpr",
            "BLOCK_I": "constexpr",
            "BLOCK_S": "constexpr",
            "QK_SCALE_LOG2": "constexpr",
            "DOT_PRECISION": "constexpr",
        }
        constexprs = {
            "HEAD_DIM": variant.head_dim,
            "BLOCK_I": AOT_BLOCK_I,
            "BLOCK_S": block_s,
            "QK_SCALE_LOG2": LOG2E / math.sqrt(variant.head_dim),
            "DOT_PRECISION": "ieee" if variant.dtype == "fp32" else "tf32",
        }
        src = ASTSource(sma_split_kernel, signature, constexprs, _aligned([0, 1, 2, 3, 6, 7]))
        num_params = SPLIT_PARAMS
    else:
        signature = {
            "acc_ptr": "*fp32",
            "ml_ptr": "*fp32",
            "out_ptr": f"*{variant.dtype}",
            "num_queries": "i32",
            "num_heads": "i32",
            "num_splits": "i32",
            "HEAD_DIM": "constexpr",
            "BLOCK_I": "constexpr",
        }
        constexprs = {"HEAD_DIM": variant.head_dim, "BLOCK_I": AOT_BLOCK_I}
        src = ASTSource(sma_merge_kernel, signature, constexprs, _aligned([0, 1, 2]))
        num_params = MERGE_PARAMS
        block_s = 0
    compiled = triton.compile(
        src,
        target=GPUTarget("cuda", variant.arch, 32),
        options={"num_warps": heuristics.NUM_WARPS},
    )
    md = compiled.metadata
    ptx = compiled.asm["ptx"]
    entry = ptx[ptx.index(".entry") :]
    entry = entry[: entry.index(")")]
    declared = entry.count(".param")
    if declared != num_params + 2:
        raise RuntimeError(
            f"{variant.symbol}: PTX entry has {declared} parameters, expected {num_params} + 2 "
            "scratch pointers: the launcher's argument list would be wrong"
        )
    image = (ptx.encode() + b"\0") if variant.ptx else compiled.asm["cubin"]
    return {
        "variant": variant,
        "name": md.name,
        "num_warps": md.num_warps,
        "shared": md.shared,
        "gscratch": md.global_scratch_size,
        "gscratch_align": md.global_scratch_align,
        "pscratch": md.profile_scratch_size,
        "pscratch_align": md.profile_scratch_align,
        "block_s": block_s,
        "image": image,
        "num_params": num_params,
    }


def variants(archs: list[int]) -> list[Variant]:
    """Every specialisation the launcher looks up, for each arch, plus the PTX fallback set."""
    ptx_candidates = [a for a in archs if a < 90]
    ptx_arch = max(ptx_candidates) if ptx_candidates else None
    out = []
    targets = [(a, False) for a in archs] + ([(ptx_arch, True)] if ptx_arch else [])
    for arch, ptx in targets:
        for head_dim in heuristics.HEAD_DIMS:
            for dtype in DTYPES:
                for mask_dtype in DTYPES:
                    out.append(Variant(arch, KIND_SPLIT, dtype, mask_dtype, head_dim, ptx))
                out.append(Variant(arch, KIND_MERGE, dtype, dtype, head_dim, ptx))
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
enum { SOFTMASK_KERNEL_SPLIT = 0, SOFTMASK_KERNEL_MERGE = 1 };
typedef struct SoftmaskKernelEntry {
    int32_t arch;           /* compute capability * 10 + minor, e.g. 86 */
    int32_t is_ptx;         /* 1: image is NUL-terminated PTX (JIT, any newer GPU) */
    int32_t kind;           /* SOFTMASK_KERNEL_SPLIT or SOFTMASK_KERNEL_MERGE */
    int32_t dtype;          /* SoftmaskDtype of query/key/value/output */
    int32_t mask_dtype;     /* SoftmaskDtype of mask (split kernels) */
    int32_t head_dim;
    int32_t block_i;        /* query rows per program */
    int32_t block_s;        /* keys per loop iteration (split kernels) */
    int32_t num_warps;      /* block = 32 * num_warps threads */
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
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "softmask_kernels_table.h").write_text(HEADER)
    decls, entries = [], []
    for row in rows:
        v: Variant = row["variant"]
        path = (out_dir / f"{v.symbol}.bin").resolve()
        path.write_bytes(row["image"])
        sym = f"softmask_image_{v.symbol}"
        decls.append(_incbin(sym, path))
        entries.append(
            f"    {{{v.arch}, {int(v.ptx)}, {v.kind}, {DTYPES[v.dtype]}, {DTYPES[v.mask_dtype]}, "
            f"{v.head_dim}, {AOT_BLOCK_I}, {row['block_s']}, {row['num_warps']}, {row['shared']}, "
            f"{row['num_params']}, {row['gscratch']}, {row['gscratch_align']}, {row['pscratch']}, "
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
    ]
    body += [
        "/* Byte size of each image, in table order. */",
        "size_t softmask_kernel_image_size(size_t index) {",
        "    static const unsigned char* const ends[][2] = {",
        *[
            f"        {{softmask_image_{r['variant'].symbol}, softmask_image_{r['variant'].symbol}_end}},"
            for r in rows
        ],
        "    };",
        "    return index < sizeof(ends) / sizeof(ends[0]) ? (size_t)(ends[index][1] - ends[index][0]) : 0;",
        "}",
    ]
    (out_dir / "softmask_kernels_table.c").write_text("\n".join(body) + "\n")


def generate(archs: list[int], out_dir: Path, jobs: int = 2) -> list[dict]:
    """Compile all variants for ``archs`` into ``out_dir``; returns the table rows."""
    todo = variants(archs)
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(_compile, todo))
    write_outputs(rows, out_dir)
    logger.info(
        "compiled %d kernels for sm %s in %.1f s", len(rows), archs, time.perf_counter() - start
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch",
        default="75,80,86,87,89,90",
        help="comma-separated compute capabilities (x10), e.g. 75,80,86,87,89,90",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--jobs", type=int, default=min(4, os.cpu_count() or 1), help="parallel compiler processes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        archs = sorted({int(a) for a in args.arch.split(",") if a.strip()})
    except ValueError:
        parser.error(f"--arch must be comma-separated integers such as 75,86, got {args.arch!r}")
    if any(a < 75 for a in archs):
        parser.error(f"--arch: the kernel needs sm_75 or newer, got {archs}")
    generate(archs, args.out, args.jobs)


if __name__ == "__main__":
    main()
