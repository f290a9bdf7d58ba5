"""End-to-end frames per second of HODOR in PyTorch on CUDA: fused kernel vs reference math.

    python benchmarks/model_gpu.py [--models tiny,hodor] [--height 480 --width 854]
                                   [--frames 60] [--dtypes fp32,fp16] [--out DIR]

Per model config (random weights, seeded: speed does not depend on the weights), dtype and op
implementation, the streaming torch backend (``softmask.runtime.torch_backend``) segments a
synthetic video: an ``init`` frame with three annotated objects, then ``step`` frames (upload one
uint8 frame, download one label map, synchronised per frame, as the streaming runtime does).
Reported: median and p90 per-frame step latency and FPS = 1 / median.

Implementations: ``fused`` is the custom op's CUDA dispatch (the Triton kernel); ``reference``
forces that dispatch onto the reference math (``softmask.kernels.unsupported_reason`` patched
for the run). Calls to the fused kernel are counted, so a row whose fused kernel never ran (or
ran when it should not have) is flagged instead of reported as a comparison.

Each (model, dtype, impl) that fails is recorded with its error and the run goes on. Writes
``<out>/model_gpu_<device>_<UTC date-time>.{json,md}``; exit status 1 if any row failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_io import write_results

logger = logging.getLogger("model_gpu")


@contextlib.contextmanager
def op_implementation(impl: str, calls: list[int]):
    """Route the custom op's CUDA dispatch to the fused kernel (counted) or the reference."""
    from softmask import kernels

    fused, reason = kernels.sma_forward, kernels.unsupported_reason

    def counted(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    kernels.sma_forward = counted
    if impl == "reference":
        kernels.unsupported_reason = lambda *args: "reference forced by model_gpu.py"
    try:
        yield
    finally:
        kernels.sma_forward, kernels.unsupported_reason = fused, reason


def synthetic_video(height: int, width: int, frames: int, seed: int = 0):
    """Random uint8 frames [H, W, 3] and a first-frame label map with objects 1..3 (rectangles)."""
    rng = np.random.default_rng(seed)
    video = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]
    labels = np.zeros((height, width), np.uint8)
    for obj in range(1, 4):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        labels[y : y + height // 4, x : x + width // 4] = obj
    return video, labels


def run_one(model_name: str, dtype: str, impl: str, args) -> dict:
    from softmask.export.frame_graphs import StreamSpec
    from softmask.model import build_model
    from softmask.runtime.torch_backend import TorchBackend

    row = {"model": model_name, "dtype": dtype, "impl": impl, "height": args.height}
    row["width"] = args.width
    torch.manual_seed(0)
    model = build_model(model_name).eval().cuda()
    if dtype == "fp16":
        model = model.half()
    spec = StreamSpec(args.height, args.width, num_objects=3)
    video, labels = synthetic_video(args.height, args.width, args.frames + args.warmup + 1)
    calls: list[int] = []
    with op_implementation(impl, calls):
        backend = TorchBackend(model, spec)
        backend.run("init", video[0], labels)
        for frame in video[1 : 1 + args.warmup]:
            backend.run("step", frame)
        torch.cuda.synchronize()
        fused_before = len(calls)
        latencies = []
        for frame in video[1 + args.warmup :]:
            start = time.perf_counter()
            backend.run("step", frame)  # returns host labels: synchronised per frame
            latencies.append((time.perf_counter() - start) * 1000.0)
        fused_calls = len(calls) - fused_before
    row["fused_kernel_calls_per_frame"] = fused_calls / len(latencies)
    if (impl == "fused") != (fused_calls > 0):
        row["problem"] = f"{impl} run made {fused_calls} fused-kernel calls"
    latencies.sort()
    row["median_ms"] = statistics.median(latencies)
    row["p90_ms"] = latencies[int(0.9 * (len(latencies) - 1))]
    row["fps"] = 1000.0 / row["median_ms"]
    del backend, model
    torch.cuda.empty_cache()
    return row


def markdown(report: dict) -> str:
    lines = [
        f"# End-to-end HODOR on {report['device']} (PyTorch, random weights)",
        "",
        (
            f"{report['date']} · torch {report['torch']} · {report['frames']} step frames at "
            f"{report['height']}x{report['width']} after {report['warmup']} warm-up frames; "
            "latency per frame includes frame upload and label download."
        ),
        "",
        "| model | dtype | op | median ms | p90 ms | FPS | fused calls / frame | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        if "fps" in r:
            lines.append(
                f"| {r['model']} | {r['dtype']} | {r['impl']} | {r['median_ms']:.2f} | "
                f"{r['p90_ms']:.2f} | {r['fps']:.1f} | {r['fused_kernel_calls_per_frame']:.0f} | "
                f"{r.get('problem', '')} |"
            )
        else:
            lines.append(
                f"| {r['model']} | {r['dtype']} | {r['impl']} | | | | | failed: "
                f"{r['error'][:120]} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,hodor")
    parser.add_argument("--dtypes", default="fp32,fp16")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not torch.cuda.is_available():
        logger.error("no CUDA device visible to torch: nothing to measure")
        return 1
    now = dt.datetime.now(dt.timezone.utc)
    report = {
        "device": torch.cuda.get_device_name(0),
        "date": now.isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "height": args.height,
        "width": args.width,
        "frames": args.frames,
        "warmup": args.warmup,
        "rows": [],
    }
    for model_name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for impl in ("fused", "reference"):
                try:
                    row = run_one(model_name, dtype, impl, args)
                except Exception as exc:
                    row = {"model": model_name, "dtype": dtype, "impl": impl}
                    row["error"] = f"{type(exc).__name__}: {exc}"[:1000]
                    logger.exception("%s %s %s failed", model_name, dtype, impl)
                    torch.cuda.empty_cache()
                report["rows"].append(row)
                logger.info("%s", row)
    write_results(args.out, "model_gpu", report["device"], now, report, markdown)
    return 1 if any("error" in r or "problem" in r for r in report["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
