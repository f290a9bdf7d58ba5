"""The run report: what a run writes to ``report.json`` and the benchmarks to their JSON.

``RunStats`` collects the pipeline's per-frame stage times; ``run_report`` turns them into the
report (percentiles per stage, end-to-end latency, counts); ``machine_info`` says what the figures
were measured on; ``run_summary`` says it in a few lines; ``write_report`` writes any report
atomically.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from softmask import __version__
from softmask.files import atomic_file
from softmask.runtime.backend import STAGES, Backend
from softmask.runtime.latency import BINS_PER_DECADE, FrameTable, model_latency
from softmask.runtime.outputs import OutputWriter
from softmask.runtime.sources import FrameSource
from softmask.signals import interrupt_reason

# Report keys of the contiguous stages, in the order a frame passes them.
PIPELINE_STAGES = ("decode", "queue", "preprocess", *STAGES, "write_queue", "write")
# Per-frame columns are kept in the report up to this many processed frames.
MAX_PER_FRAME = 20_000

# FrameTable columns: the stages, then end-to-end latency, the model's stages (frames that ran a
# graph) and the GPU's own time (backends that measure it); NaN where a frame has none.
_COLUMNS = (*PIPELINE_STAGES, "latency", "model", "GPU compute")


class RunStats:
    """Per-frame durations (seconds), added by the writer thread in frame order, in bounded
    memory (``FrameTable``); the per-frame columns of the report only up to MAX_PER_FRAME."""

    def __init__(self) -> None:
        self.table = FrameTable(_COLUMNS)
        self.graphs: Counter[str] = Counter()
        self.index: list[int] = []
        self.graph: list[str] = []
        self.done: list[float] = []  # perf_counter when the outputs were written

    def add(self, index: int, graph: str, times: Mapping[str, float], latency: float,
            model: float | None, gpu_compute: float | None, done: float) -> None:
        """One written frame: its stage times (seconds; a stage it skipped counts 0)."""
        self.table.add([
            *(times.get(stage, 0.0) for stage in PIPELINE_STAGES), latency,
            math.nan if model is None else model,
            math.nan if gpu_compute is None else gpu_compute,
        ])
        self.graphs[graph] += 1
        if len(self.index) < MAX_PER_FRAME:
            self.index.append(index)
            self.graph.append(graph)
            self.done.append(done)

    def per_frame(self, started: float) -> dict[str, list] | None:
        """The report's per-frame columns (None past MAX_PER_FRAME frames)."""
        if self.table.frames > MAX_PER_FRAME:
            return None
        ms = {c: [round(float(v) * 1e3, 4) for v in self.table.values(c)] for c in PIPELINE_STAGES}
        return {
            "index": self.index,
            "graph": self.graph,
            **{f"{s}_ms": ms[s] for s in PIPELINE_STAGES},
            "latency_ms": [round(float(v) * 1e3, 4) for v in self.table.values("latency")],
            "done_s": [round(t - started, 6) for t in self.done],
        }


def run_report(
    backend: Backend,
    source: FrameSource,
    stats: RunStats,
    outputs: OutputWriter,
    processed: int,
    decoded: int,
    dropped: int,
    wall: float,
    live: bool,
    realtime: bool,
    setup: Mapping[str, Any],
    failure: BaseException | None,
    out: Path,
    started: float,
) -> dict[str, Any]:
    """The ``report.json`` of one pipeline run: counts, graphs, setup times, per-stage and
    end-to-end latency percentiles (milliseconds), the machine; ``failure`` is None when the run
    completed. ``wall`` is seconds, ``started`` the run's start in ``time.perf_counter`` seconds."""
    report: dict[str, Any] = {
        "softmask_version": __version__,
        "backend": backend.name,
        "device": backend.device,
        "precision": backend.precision,
        "threads": getattr(backend, "threads", None),
        "spec": asdict(backend.spec),
        "source": {
            "name": source.name, "kind": source.kind, "fps": source.fps,
            "frame_count": source.frame_count, "live": live, "realtime": realtime,
        },
        "completed": failure is None,
        "error": None if failure is None else interrupt_reason(failure),
        "frames": processed,
        "frames_decoded": decoded,
        "frames_processed": processed,
        "frames_dropped": dropped,
        "masks_written": outputs.written,
        "masks_kept": outputs.skipped,
        "videos_kept": outputs.videos_kept,
        "graphs": dict(stats.graphs),
        "setup": dict(setup),
        "stages": {s: stats.table.summary(s) for s in PIPELINE_STAGES},
        "latency": stats.table.summary("latency"),
        "model_latency": model_latency(stats.table),
        "statistics": {
            "exact": stats.table.exact, "exact_up_to_frames": stats.table.exact_frames,
            "method": "exact percentiles" if stats.table.exact else (
                f"estimated from log-spaced histograms ({BINS_PER_DECADE} bins per decade)"),
        },
        "achieved_fps": processed / wall if wall > 0 else None,
        "wall_s": wall,
        "machine": machine_info(),
        "out_dir": str(out),
    }
    gpu = stats.table.summary("GPU compute")
    if gpu["count"]:
        report["stages"]["GPU compute"] = gpu
    per_frame = stats.per_frame(started)
    if per_frame is not None:
        report["per_frame"] = per_frame
    return report


def run_summary(report: Mapping[str, Any], out: str | Path) -> str:
    """A ``run_report`` in a few lines (no trailing newline), as ``softmask run`` prints it:
    what ran and its setup times, latency (ms), model time (ms) and the stage means (ms);
    ``out`` is the run's output folder."""
    setup, stages = report["setup"], report["stages"]
    setup_line = ", ".join(
        f"{key[:-2].replace('_', ' ')} {value:.1f} s"
        for key, value in setup.items() if key.endswith("_s")
    )
    export = f"; export: {setup['export']}" if setup.get("export") else ""
    lines = [(f"{report['backend']} ({report['device']}, {report['precision']}): "
              f"{report['frames_processed']} frames -> {Path(out)}; setup: {setup_line}{export}")]
    lat, model = report["latency"], report["model_latency"]
    if lat["count"]:
        dropped = f", {report['frames_dropped']} dropped" if report["frames_dropped"] else ""
        lines.append(f"latency (decode to mask written): p50 {lat['p50_ms']:.1f} ms, p90 "
                     f"{lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms; "
                     f"{report['achieved_fps']:.1f} fps{dropped}")
    if model["count"]:
        lines.append(f"model (upload, graph, download): p50 {model['p50_ms']:.1f} ms, p90 "
                     f"{model['p90_ms']:.1f} ms over {model['count']} frames")
    means = ", ".join(f"{name} {stages[name]['mean_ms']:.1f}" for name in stages
                      if stages[name]["mean_ms"] is not None)
    if means:
        lines.append(f"stage means (ms): {means}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, OS, Python; where PyTorch is installed also
    its CPU threads and the GPU (if torch sees one)."""
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    if importlib.util.find_spec("torch") is None:  # a deployment install
        return info
    import torch

    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON, atomically."""
    with atomic_file(path, "w") as stream:
        json.dump(report, stream, indent=2)
        stream.write("\n")
