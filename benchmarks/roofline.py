"""Roofline *model* of the fused kernel per shape and GPU, from the static SASS report.

    python benchmarks/roofline.py [--sass benchmarks/results/kernel_sass_<host>_<time>.json]

No GPU runs here: every figure is a model until ``benchmarks/op_gpu.py`` measures it. Per shape
(fp16, H = 8, D = 32) and GPU it prints:

- bytes: the op's floor, K + V + M + Q + O (``docs/reference/soft_masked_attention.md``);
- DRAM us: bytes / the GPU's peak DRAM bandwidth (datasheet; a measured copy reaches ~90 % of it);
- issue us: warp instructions of the main loop (static SASS count of the kernel the launcher picks,
  per iteration, times warps, key tiles, heads, query tiles and batch) over SMs x 4 schedulers x
  boost clock, i.e. one instruction per scheduler per cycle: optimistic, and blind to stalls;
- balance: mean over busiest SM key tiles of the chosen split count (work per SM, not time);
- model us = max(DRAM, issue) / balance, and what fraction of peak DRAM bandwidth that is;
- L2->SM MB: K and V once per (head, query tile), the mask once per head and query tile (the
  heads share it through L2, not DRAM); merge KB: fp32 partials written and read back.

Not modelled: launch latency (~2-4 us between kernels; none inside a CUDA graph), the merge tail
(the last program of each group reads its partials from L2), L2 bandwidth limits, clocks below
boost, the first tile's pipeline fill.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from softmask.kernels import heuristics as hx

RESULTS = Path(__file__).resolve().parent / "results"
HEADS, HEAD_DIM = 8, 32
SHAPES = [(1, 40, 25680), (1, 40, 57600), (4, 40, 25680), (1, 12, 6480), (1, 40, 6480)]


@dataclass(frozen=True)
class Gpu:
    name: str
    arch: int
    sms: int
    clock_ghz: float  # boost clock
    dram_gbs: float  # datasheet peak


GPUS = [
    Gpu("H100 SXM", 90, 132, 1.98, 3350.0),
    Gpu("H200 SXM", 90, 132, 1.98, 4800.0),
    Gpu("Jetson AGX Orin 64GB", 87, 16, 1.30, 204.8),
]


def op_bytes(b: int, i: int, s: int) -> int:
    e = HEADS * HEAD_DIM
    return 2 * (2 * b * s * e + b * i * s + 2 * b * i * e)


def kernel_symbol(i: int, s: int, arch: int) -> str:
    block_i = hx.block_i_for(i, HEAD_DIM)
    if not hx.keys_aligned(s):
        return f"sma_split_fp16_mfp16_d{HEAD_DIM}_any_sm{arch}"
    tag = "" if block_i == 64 else f"_i{block_i}"
    return f"sma_split_fp16_mfp16_d{HEAD_DIM}{tag}_sm{arch}"


def model_row(gpu: Gpu, b: int, i: int, s: int, kernels: dict[str, dict]) -> dict:
    symbol = kernel_symbol(i, s, gpu.arch)
    k = kernels[symbol]
    block_i, block_s, warps = k["block_i"], k["block_s"], k["num_warps"]
    qtiles = hx.cdiv(i, block_i)
    key_tiles = hx.cdiv(s, block_s)
    programs_per_split = b * HEADS * qtiles
    splits = hx.choose_num_splits(b, HEADS, i, s, block_i, block_s, gpu.sms)
    iterations = key_tiles * programs_per_split  # main-loop iterations, all programs
    loop_instr = k["loop"]["instructions"] * block_s / k["keys_per_iteration"]
    issue_us = loop_instr * warps * iterations / (gpu.sms * 4 * gpu.clock_ghz * 1e3)
    nbytes = op_bytes(b, i, s)
    dram_us = nbytes / (gpu.dram_gbs * 1e3)
    busiest = hx.cdiv(programs_per_split * splits, gpu.sms) * hx.cdiv(key_tiles, splits)
    balance = programs_per_split * key_tiles / gpu.sms / busiest
    model_us = max(dram_us, issue_us) / balance
    l2_bytes = b * HEADS * qtiles * (2 * s * HEAD_DIM * 2 + block_i * s * 2)
    merge_bytes = 0 if splits == 1 else 2 * b * HEADS * splits * i * (HEAD_DIM + 2) * 4
    return {
        "gpu": gpu.name,
        "B": b,
        "I": i,
        "S": s,
        "kernel": symbol,
        "splits": splits,
        "MB": nbytes / 1e6,
        "dram_us": dram_us,
        "issue_us": issue_us,
        "balance": balance,
        "model_us": model_us,
        "pct_peak": 100.0 * dram_us / model_us,
        "l2_MB": l2_bytes / 1e6,
        "merge_KB": merge_bytes / 1e3,
    }


def latest_sass() -> Path:
    found = sorted(RESULTS.glob("kernel_sass_*.json"))
    if not found:
        raise FileNotFoundError(
            f"no kernel_sass_*.json in {RESULTS}: run benchmarks/kernel_sass.py"
        )
    return found[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sass", type=Path, help="kernel_sass JSON (default: the newest)")
    args = parser.parse_args(argv)
    path = args.sass or latest_sass()
    kernels = {k["kernel"]: k for k in json.loads(path.read_text())["kernels"]}
    print(f"Model from {path.name} (static SASS counts; nothing measured on a GPU).\n")
    print(
        "| GPU | B | I | S | kernel | splits | MB | DRAM us | issue us | balance | model us | "
        "% of peak DRAM | L2->SM MB | merge KB |"
    )
    print("|" + " --- |" * 14)
    for gpu in GPUS:
        for b, i, s in SHAPES:
            r = model_row(gpu, b, i, s, kernels)
            print(
                f"| {r['gpu']} | {b} | {i} | {s} | {r['kernel']} | {r['splits']} | "
                f"{r['MB']:.1f} | {r['dram_us']:.1f} | {r['issue_us']:.1f} | {r['balance']:.2f} | "
                f"{r['model_us']:.1f} | {r['pct_peak']:.0f} | {r['l2_MB']:.1f} | "
                f"{r['merge_KB']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
