"""Per-graph TensorRT latency of the three attention lowerings (``softmask export --attention``).

    python benchmarks/trt_lowerings.py [--model tiny] [--height 480 --width 854] [--repeats 30]
                                       [--out DIR]

For each lowering (plugin, function, onnx-attention) the streaming graphs of one model (random
weights, seeded) are exported, built by softmask's TensorRT backend (engines cached under the
output folder) and each graph is run ``--repeats`` times on a synthetic frame with three
annotated objects; the median and p90 milliseconds per run (upload, enqueue, labels download,
synchronised) are reported per graph, with the labels' agreement with the plugin lowering.
Needs a GPU, TensorRT, cuda-python and the plugin library (``SOFTMASK_PLUGIN_LIB``). Writes
``<out>/trt_lowerings_<UTC date-time>.json``; exit status 1 if a lowering failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from softmask.export.streaming import export_streaming
from softmask.model import build_model
from softmask.ops.onnx_lowering import ATTENTION_LOWERINGS
from softmask.runtime.tensorrt_backend import TensorRTBackend


def _frame_and_annotation(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    annotation = np.zeros((height, width), np.uint8)
    for index in range(3):
        y, x = height // 4 + index * height // 6, width // 5 + index * width // 4
        annotation[y:y + height // 8, x:x + width // 8] = index + 1
    return frame, annotation


def time_lowering(model, attention: str, args, work: Path) -> dict:
    export = export_streaming(model, work / attention, args.height, args.width, 3, 7,
                              attention=attention)
    backend = TensorRTBackend(export, cache_dir=work / "engines")
    frame, annotation = _frame_and_annotation(args.height, args.width)
    result = {"warmup_s": backend.warmup_seconds, "graphs": {}}
    for graph in ("init", "annotate", "step"):
        given = None if graph == "step" else annotation
        times, labels = [], None
        for _ in range(args.repeats):
            backend.reset()
            if graph != "init":
                backend.run("init", frame, annotation)
            start = time.perf_counter()
            labels = backend.run(graph, frame, given).labels
            times.append((time.perf_counter() - start) * 1e3)
        ordered = sorted(times)
        result["graphs"][graph] = {
            "median_ms": statistics.median(times),
            "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
            "labels": labels,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    work = out / "trt_lowerings_work"
    torch.manual_seed(0)
    model = build_model(args.model).eval()
    results, failed = {}, False
    for attention in ATTENTION_LOWERINGS:
        try:
            results[attention] = time_lowering(model, attention, args, work)
        except Exception as error:  # noqa: BLE001 - recorded, the next lowering still runs
            results[attention] = {"error": f"{type(error).__name__}: {error}",
                                  "traceback": traceback.format_exc()}
            failed = True
    reference = {g: row["labels"] for g, row in results.get("plugin", {}).get("graphs", {}).items()}
    for result in results.values():
        for graph, row in result.get("graphs", {}).items():
            labels = row.pop("labels")
            if graph in reference:
                row["labels_equal_to_plugin"] = float((labels == reference[graph]).mean())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"trt_lowerings_{stamp}.json"
    path.write_text(json.dumps({"model": args.model, "height": args.height, "width": args.width,
                                "repeats": args.repeats, "results": results}, indent=2))
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
