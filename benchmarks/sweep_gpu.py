"""Configuration sweep of the fused kernel (JIT) at the goal shape and two neighbours.

    python benchmarks/sweep_gpu.py [--out benchmarks/results] [--budget-s 90]

The goal shape is B = 1, I = 40, S = 25,680 (H = 8, D = 32, fp16; HODOR at 480p); the neighbours
keep B, I and change S to 6,420 and 57,600. The question: does another split count or tile choice
than ``softmask.kernels.heuristics`` picks close the gap to the DRAM floor (op bytes over the
measured copy bandwidth), or are the kernel's fixed costs what remains?

Two passes, each configuration forced through ``sma_forward(..., tiles=...)``:

1. splits: the heuristic's tiles, warps and stages with split counts from 1 to the bound (a fixed
   ladder plus the heuristic's own count), at every shape; no recompilation (a runtime argument);
2. tiles (goal shape only): BLOCK_S in {64, 128, 256} x num_stages in {2, 3, 4} x num_warps in
   {4, 8} at BLOCK_I 64, plus BLOCK_I 32 (two query tiles), each at the heuristic's split count
   and at the fastest count of pass 1.

Every configuration is first checked against the float64 reference (a wrong one is reported, not
timed), then timed as in ``op_gpu.py``: device time per call inside a CUDA graph, inputs rotated
over more than twice the L2. The whole sweep stops starting configurations after ``--budget-s``
seconds (what is left is listed as not run). Writes ``<out>/sweep_gpu_<device>_<date>.json/.md``.
Exit status 1 when a configuration failed or gave a wrong result (one needing more shared memory
than the GPU has is listed as unlaunchable instead), or no GPU is visible.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import math
import sys
import time
from pathlib import Path

import torch
from copy_bandwidth import events_gbs
from op_gpu import ALPHA, HEAD_DIM, HEADS, TOLERANCE, device_time_graph, op_bytes, soft_inputs
from results_io import write_results

from softmask.kernels import heuristics
from softmask.ops.reference import soft_masked_attention as reference

logger = logging.getLogger("sweep_gpu")

GOAL = (1, 40, 25680)
SHAPES = [GOAL, (1, 40, 6420), (1, 40, 57600)]
SPLIT_LADDER = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
BLOCK_S_CHOICES = (64, 128, 256)
STAGE_CHOICES = (2, 3, 4)
WARP_CHOICES = (4, 8)
REPLAYS = 5


def heuristic_tiles(b: int, i: int, s: int, num_sms: int, arch: int) -> heuristics.KernelTiles:
    """What ``sma_forward`` picks for this fp16 call on this GPU."""
    return heuristics.kernel_tiles(b, HEADS, i, s, HEAD_DIM, num_sms, arch, 2, 2)


def split_pass(base: heuristics.KernelTiles, num_keys: int) -> list[heuristics.KernelTiles]:
    """``base`` at every ladder split count up to the key tiles (and its own count)."""
    bound = min(heuristics.MAX_SPLITS, heuristics.cdiv(num_keys, base.block_s))
    counts = sorted({n for n in SPLIT_LADDER if n <= bound} | {base.num_splits})
    return [dataclasses.replace(base, num_splits=n) for n in counts]


def tile_pass(base: heuristics.KernelTiles, best_splits: int) -> list[heuristics.KernelTiles]:
    """Tile, stage and warp variants at the heuristic's split count and at ``best_splits``."""
    out = []
    # The fastest split count first: if the budget runs out, the more telling half is done.
    for splits in dict.fromkeys((best_splits, base.num_splits)):
        for block_s in BLOCK_S_CHOICES:
            for stages in STAGE_CHOICES:
                for warps in WARP_CHOICES:
                    out.append(heuristics.KernelTiles(64, block_s, warps, stages, splits))
        out.append(heuristics.KernelTiles(32, base.block_s, 2, base.num_stages, splits))
    return [t for t in out if t != base]


def describe(t: heuristics.KernelTiles) -> str:
    return (f"BLOCK_I {t.block_i}, BLOCK_S {t.block_s}, warps {t.num_warps}, "
            f"stages {t.num_stages}, splits {t.num_splits}")


class Shape:
    """Inputs of one shape (rotated copies), its reference and its DRAM floor."""

    def __init__(self, b: int, i: int, s: int, copy_gbs: float) -> None:
        self.b, self.i, self.s = b, i, s
        self.nbytes = op_bytes(b, i, s)
        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        copies = max(2, math.ceil(2 * l2 / self.nbytes) + 1)
        self.sets = [soft_inputs(b, i, s, seed) for seed in range(copies)]
        self.alpha = torch.tensor(ALPHA, device="cuda")
        q, k, v, m = self.sets[0]
        self.want = reference(q.double(), k.double(), v.double(), m.double(), self.alpha.double(),
                              HEADS)
        self.floor_us = self.nbytes / (copy_gbs * 1e9) * 1e6 if copy_gbs else float("nan")

    def run(self, tiles: heuristics.KernelTiles, j: int = 0) -> torch.Tensor:
        from softmask.kernels import sma_forward

        q, k, v, m = self.sets[j % len(self.sets)]
        return sma_forward(q, k, v, m, self.alpha, HEADS, tiles=tiles)


def measure(shape: Shape, tiles: heuristics.KernelTiles, copy_gbs: float, pass_name: str,
            heuristic: heuristics.KernelTiles) -> dict:
    """One configuration: checked, then timed; failures are recorded in the row."""
    row = {"pass": pass_name, "B": shape.b, "I": shape.i, "S": shape.s,
           **dataclasses.asdict(tiles), "heuristic": tiles == heuristic}
    try:
        out = shape.run(tiles)
        torch.cuda.synchronize()
        err = ((out.double() - shape.want).abs().max() / shape.want.abs().max()).item()
        row["rel_error"] = err
        if err > TOLERANCE[torch.float16]:
            row.update(ok=False, error=f"relative error {err:.3g} above {TOLERANCE[torch.float16]}")
            return row
        row["us"] = device_time_graph(lambda j: shape.run(tiles, j), len(shape.sets), REPLAYS)
        row["GBps"] = shape.nbytes / (row["us"] * 1e-6) / 1e9
        row["pct_copy"] = 100.0 * row["GBps"] / copy_gbs if copy_gbs else float("nan")
        row["x_floor"] = row["us"] / shape.floor_us
        row["ok"] = True
    except Exception as exc:  # noqa: BLE001 - a result, not a crash
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:400])
        # More shared memory than the GPU has: that configuration does not exist here.
        row["unlaunchable"] = type(exc).__name__ == "OutOfResources"
        torch.cuda.synchronize()
    logger.info("%s", row)
    return row


def sweep(budget_s: float, copy_gbs: float) -> tuple[list[dict], list[str]]:
    """Both passes within the budget: (rows, configurations not run)."""
    props = torch.cuda.get_device_properties(0)
    num_sms, arch = props.multi_processor_count, props.major * 10 + props.minor
    start = time.perf_counter()
    rows: list[dict] = []
    not_run: list[str] = []

    def run_all(shape: Shape, plan: list[heuristics.KernelTiles], pass_name: str,
                heuristic: heuristics.KernelTiles) -> None:
        for tiles in plan:
            if time.perf_counter() - start > budget_s:
                not_run.append(f"{pass_name} B={shape.b} I={shape.i} S={shape.s}: "
                               f"{describe(tiles)}")
                continue
            rows.append(measure(shape, tiles, copy_gbs, pass_name, heuristic))

    # Every shape's split pass first (no recompilation: quick), then the goal's tile pass.
    goal = None
    for b, i, s in SHAPES:
        shape = Shape(b, i, s, copy_gbs)
        run_all(shape, split_pass(heuristic_tiles(b, i, s, num_sms, arch), s), "splits",
                heuristic_tiles(b, i, s, num_sms, arch))
        if (b, i, s) == GOAL:
            goal = shape
        del shape
        torch.cuda.empty_cache()
    base = heuristic_tiles(*GOAL, num_sms, arch)
    timed = [r for r in rows if r.get("ok") and (r["B"], r["I"], r["S"]) == GOAL]
    best = min(timed, key=lambda r: r["us"])["num_splits"] if timed else base.num_splits
    run_all(goal, tile_pass(base, best), "tiles", base)
    return rows, not_run


def markdown(report: dict) -> str:
    lines = [
        f"# Configuration sweep of the fused kernel (JIT): {report.get('device', '?')}",
        "",
        (f"{report['date']} · torch {report.get('torch')} · triton {report.get('triton')} · "
        f"copy bandwidth {report.get('copy_GBps', float('nan')):.0f} GB/s (CUDA events, 4 GiB) · "
        f"fp16, H = {HEADS}, D = {HEAD_DIM} · budget {report['budget_s']} s, took "
        f"{report.get('seconds', float('nan')):.0f} s"),
        "",
        ("device us: per call inside a CUDA graph, inputs rotated over > 2x L2; floor: the op's "
        "bytes at the copy bandwidth; * = the heuristic's own choice."),
    ]
    rows = report.get("rows", [])
    for b, i, s in SHAPES:
        mine = [r for r in rows if (r["B"], r["I"], r["S"]) == (b, i, s)]
        if not mine:
            continue
        floor = op_bytes(b, i, s) / (report["copy_GBps"] * 1e9) * 1e6
        lines += [
            "",
            f"## B = {b}, I = {i}, S = {s} (floor {floor:.1f} us)",
            "",
            ("| pass | BLOCK_I | BLOCK_S | warps | stages | splits | device us | % of copy | "
            "x floor | rel. error |"),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in sorted(mine, key=lambda r: r.get("us", float("inf"))):
            mark = " *" if r["heuristic"] else ""
            timing = (f"{r['us']:.1f}{mark} | {r['pct_copy']:.0f} | {r['x_floor']:.2f}"
                      if "us" in r else f"failed{mark}: {r.get('error', '')[:60]} | |")
            err = f"{r['rel_error']:.1e}" if "rel_error" in r else ""
            lines.append(f"| {r['pass']} | {r['block_i']} | {r['block_s']} | {r['num_warps']} | "
                         f"{r['num_stages']} | {r['num_splits']} | {timing} | {err} |")
    if report.get("not_run"):
        lines += ["", f"Not run (budget spent): {len(report['not_run'])} configurations."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--budget-s", type=float, default=90.0,
                        help="stop starting configurations after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not torch.cuda.is_available():
        logger.error("no CUDA device visible to torch: nothing to sweep")
        return 1
    import triton

    now = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    copy_gbs = events_gbs(4 << 30)
    torch.cuda.empty_cache()
    rows, not_run = sweep(args.budget_s, copy_gbs)
    report = {
        "device": torch.cuda.get_device_name(0),
        "date": now.isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "copy_GBps": copy_gbs,
        "budget_s": args.budget_s,
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "not_run": not_run,
    }
    write_results(args.out, "sweep_gpu", report["device"], now, report, markdown)
    bad = [r for r in rows if not r.get("ok") and not r.get("unlaunchable")]
    if bad:
        logger.error("%d configurations failed or were wrong", len(bad))
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
