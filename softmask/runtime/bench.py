"""``softmask bench``: how much of the model's speed the streaming pipeline keeps.

The same stream runs twice on one backend:

(a) model only: the frames decoded into memory first, then ``VideoStream.process`` per frame,
    timed around that call (what a benchmark of the model alone would report);
(b) the full pipeline of ``softmask.runtime.pipeline``: decode thread, model, writer thread.

On ONNX Runtime's CPU provider a third run, (a) with spin-waiting intra-op threads (ONNX
Runtime's own default, which softmask's backend turns off for the pipeline), is the fastest the
model alone runs, and the pipeline is compared with it too.

Throughput excludes the first ``warmup`` frames of each run (lazy initialisation, allocator
growth). With ``repeats`` > 1 the two runs alternate (a, b, a, b, ...) and the medians are
compared, so that a machine whose load drifts does not favour either. The ratio (b) / (a) says
what decoding, queues and writing cost; the pipeline's stage percentiles (last repeat) say where. Results: ``bench.json``, ``bench.md`` and ``bench.png`` (per-frame latency
over time, per stage) in the output folder, with peak memory and the machine. On a Jetson,
``tegrastats`` runs during the runs and its GPU and memory load and power rails are recorded
beside the figures (``softmask.runtime.tegrastats``).
"""

from __future__ import annotations

import importlib.util
import logging
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softmask.errors import InputError
from softmask.runtime.annotations import Annotations, resolve_annotations
from softmask.runtime.latency import latency_summary
from softmask.runtime.onnxruntime_backend import OnnxRuntimeBackend
from softmask.runtime.outputs import prepare_output_dir
from softmask.runtime.pipeline import Progress, check_annotations, stream_video
from softmask.runtime.report import PIPELINE_STAGES, machine_info, write_report
from softmask.runtime.settings import RunSettings, prepare_backend
from softmask.runtime.sources import Frame, FrameSource, open_source
from softmask.runtime.stream import VideoStream
from softmask.runtime.tegrastats import TegrastatsRecorder

logger = logging.getLogger(__name__)

DEFAULT_WARMUP = 5


class _FirstFrames(FrameSource):
    """The first ``count`` frames of another source (``count`` None: all of them)."""

    def __init__(self, inner: FrameSource, count: int | None) -> None:
        super().__init__()
        self.inner, self.count = inner, count
        for name in ("name", "kind", "fps", "live", "names_from_files"):
            setattr(self, name, getattr(inner, name))
        known = inner.frame_count
        self.frame_count = known if count is None else min(count, known or count)

    def _frames(self) -> Iterator[Frame]:
        for frame in self.inner:
            if self.count is not None and frame.index >= self.count:
                return
            yield frame

    def close(self) -> None:
        self.inner.close()


def _model_only(
    backend, frames: Sequence[Frame], annotations: Annotations
) -> tuple[list[float], list[str]]:
    """Seconds of ``VideoStream.process`` per in-memory frame, and the graph each ran."""
    stream = VideoStream(backend)
    seconds, graphs = [], []
    for frame in frames:
        tick = time.perf_counter()
        stream.process(frame.rgb, annotations.labels.get(frame.index), frame.origin,
                       annotations.source(frame.index))
        seconds.append(time.perf_counter() - tick)
        graphs.append(stream.last_graph)
    return seconds, graphs


def _spin_waiting_twin(backend) -> OnnxRuntimeBackend | None:
    """The same export on ONNX Runtime's CPU provider with spin-waiting threads, or None for
    other backends and devices."""
    if not isinstance(backend, OnnxRuntimeBackend) or not backend.device.startswith("cpu"):
        return None
    return OnnxRuntimeBackend(backend.export, providers=backend.providers,
                              threads=backend.threads, spin_wait=True)


def _steady_fps(done: Sequence[float], warmup: int) -> float | None:
    """Frames per second between the outputs of frame ``warmup - 1`` and of the last frame."""
    if len(done) <= warmup or warmup < 1:
        return None
    span = done[-1] - done[warmup - 1]
    return (len(done) - warmup) / span if span > 0 else None


def _peak_memory() -> dict[str, float | None]:
    """Peak resident memory of this process (MiB) and, on CUDA, torch's allocator peak (MiB; None
    without CUDA or without PyTorch)."""
    peak: dict[str, float | None] = {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_torch_mib": None,
    }
    if importlib.util.find_spec("torch") is None:  # a deployment install
        return peak
    import torch

    if torch.cuda.is_available():
        peak["peak_cuda_torch_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def run_bench(
    source: str | Path,
    annotations: Sequence[str | Path],
    out_dir: str | Path,
    settings: RunSettings,
    *,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = 1,
    max_frames: int | None = None,
    fps: float | None = None,
    progress: Progress | None = None,
    on_export: Callable[[str], None] | None = None,
    command_line: str | None = None,
) -> dict[str, Any]:
    """Benchmark ``source`` on ``settings.backend``: model only, then the full pipeline.

    Args:
        source: anything ``open_source`` opens (a file source gives both runs the same frames).
        annotations: annotation specs (``resolve_annotations``).
        out_dir: gets bench.json, bench.md, bench.png, and the pipeline run's outputs in
            ``pipeline/`` (replaced on every bench).
        warmup: frames excluded from each run's throughput.
        repeats: times each run is made, alternating; medians are reported.
        max_frames: bench only the first frames (default: all; they are held in memory for the
            model-only run).
        command_line: how the bench was invoked, recorded in the results.

    Returns:
        The results (also in bench.json).

    Raises:
        InputError: bad source, annotations or settings, or fewer frames than ``warmup`` + 2.
    """
    settings.check()
    out = Path(out_dir)
    with _FirstFrames(open_source(source, fps=fps), max_frames) as frames:
        if frames.live:
            raise InputError(
                f"{frames.name}: bench runs the same frames twice; a live source gives others "
                "each time (record it to a file first)"
            )
        found = resolve_annotations(annotations, frames.inner)  # folders: names of its files
        decoded = list(frames)
    if len(decoded) < warmup + 2:
        raise InputError(f"{source}: {len(decoded)} frames; bench needs more than --warmup + 1")
    height, width = decoded[0].rgb.shape[:2]
    prepared = prepare_backend(settings, height, width, found.largest_id, on_export)
    check_annotations(found, height, width, prepared.backend.spec.num_objects)
    spinning = _spin_waiting_twin(prepared.backend)
    model_fps, pipeline_fps, spinning_fps = [], [], []
    with TegrastatsRecorder() as tegrastats:
        for repeat in range(repeats):
            logger.info("repeat %d/%d: model only on %d frames in memory", repeat + 1, repeats,
                        len(decoded))
            model_seconds, graphs = _model_only(prepared.backend, decoded, found)
            model_fps.append(latency_summary(model_seconds[warmup:])["fps"])
            if spinning is not None:
                spinning_fps.append(
                    latency_summary(_model_only(spinning, decoded, found)[0][warmup:])["fps"]
                )
            pipeline_dir = prepare_output_dir(out / "pipeline", overwrite=True)  # cleared at start
            with _FirstFrames(open_source(source, fps=fps), max_frames) as frames:
                report = stream_video(prepared.backend, frames, found, pipeline_dir,
                                      progress=progress, setup=prepared.setup)
            pipeline_fps.append(_steady_fps(report["per_frame"]["done_s"], warmup))
    model_median = float(np.median(model_fps))
    pipeline_median = float(np.median(pipeline_fps)) if None not in pipeline_fps else None
    results = {
        "source": report["source"],
        "backend": report["backend"],
        "device": report["device"],
        "precision": report["precision"],
        "threads": report["threads"],
        "spec": report["spec"],
        "frames": len(decoded),
        "warmup_frames": warmup,
        "repeats": repeats,
        "model_only": {
            "fps": model_median,
            "fps_per_repeat": model_fps,
            "latency": latency_summary(model_seconds[warmup:]),
            "per_frame_ms": [round(s * 1e3, 4) for s in model_seconds],
            "graphs": graphs,
        },
        "pipeline": {
            "fps": pipeline_median,
            "fps_per_repeat": pipeline_fps,
            "stages": report["stages"],
            "latency": report["latency"],
            "per_frame": report["per_frame"],
            "frames_dropped": report["frames_dropped"],
        },
        "pipeline_to_model_only": (
            pipeline_median / model_median if pipeline_median and model_median else None
        ),
        "model_only_spin_wait": (
            {"fps": float(np.median(spinning_fps)), "fps_per_repeat": spinning_fps}
            if spinning_fps else None
        ),
        "pipeline_to_model_only_spin_wait": (
            pipeline_median / float(np.median(spinning_fps))
            if spinning_fps and pipeline_median else None
        ),
        "setup": prepared.setup,
        "memory": _peak_memory(),
        "tegrastats": tegrastats.summary(),
        "machine": machine_info(),
        "command_line": command_line,
    }
    write_bench(out, results)
    return results


def write_bench(out: Path, results: dict[str, Any]) -> None:
    """bench.json, bench.md and bench.png in ``out``."""
    write_report(out / "bench.json", results)
    (out / "bench.md").write_text(bench_markdown(results))
    plot_bench(results, out / "bench.png")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _per_repeat(run: dict[str, Any]) -> str:
    return ", ".join(_ms(v) for v in run["fps_per_repeat"])


def _spin_wait_rows(results: dict[str, Any]) -> list[str]:
    spinning = results["model_only_spin_wait"]
    if spinning is None:
        return []
    ratio = results["pipeline_to_model_only_spin_wait"]
    return [
        (f"| model only, ONNX Runtime threads spin-waiting (its default) | {_ms(spinning['fps'])}"
         f" | {_per_repeat(spinning)} |"),
        f"| pipeline / model only spin-waiting | {'-' if ratio is None else f'{ratio:.3f}'} | |",
    ]


def bench_markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown page (what, where, throughput, stages)."""
    machine, source = results["machine"], results["source"]
    ratio = results["pipeline_to_model_only"]
    lines = [
        f"# softmask bench: {Path(source['name']).name}",
        "",
        (f"- source: `{source['name']}` ({source['kind']}, {results['frames']} frames, "
        f"fps {source['fps']})"),
        (f"- backend: {results['backend']} on {results['device']}, {results['precision']}, "
        f"threads {results['threads']}; frames {results['spec']['height']}x"
        f"{results['spec']['width']}, {results['spec']['num_objects']} object slots"),
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['os']}, Python "
        f"{machine['python']}" + (f", GPU {machine['gpu']}" if machine.get("gpu") else ""),
        (f"- throughput excludes the first {results['warmup_frames']} frames of each run; "
        f"medians of {results['repeats']} alternating repeats"),
        f"- command: `{results['command_line'] or 'run_bench() from Python'}`",
        "",
        "| run | frames/s (median) | per repeat |",
        "| --- | --- | --- |",
        (f"| model only (frames in memory) | {_ms(results['model_only']['fps'])} | "
        f"{_per_repeat(results['model_only'])} |"),
        (f"| full pipeline (decode, model, write) | {_ms(results['pipeline']['fps'])} | "
        f"{_per_repeat(results['pipeline'])} |"),
        f"| pipeline / model only | {'-' if ratio is None else f'{ratio:.3f}'} | |",
        *_spin_wait_rows(results),
        "",
        "Pipeline stages, per frame, all frames of the last repeat (ms):",
        "",
        "| stage | p50 | p90 | p99 | mean | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    stages = dict(results["pipeline"]["stages"])
    stages["end to end"] = results["pipeline"]["latency"]
    for name, s in stages.items():
        lines.append(f"| {name} | {_ms(s['p50_ms'])} | {_ms(s['p90_ms'])} | {_ms(s['p99_ms'])} "
                     f"| {_ms(s['mean_ms'])} | {_ms(s['max_ms'])} |")
    memory = results["memory"]
    lines += ["", f"Peak resident memory: {memory['peak_rss_mib']:.0f} MiB"
              + (f"; torch CUDA allocator peak {memory['peak_cuda_torch_mib']:.0f} MiB"
                 if memory["peak_cuda_torch_mib"] is not None else ""), ""]
    lines += _tegrastats_lines(results.get("tegrastats"))
    return "\n".join(lines)


def _tegrastats_lines(summary: dict[str, Any] | None) -> list[str]:
    """tegrastats' loads and rails during the runs (none off a Jetson)."""
    if summary is None:
        return []

    def load(stats: dict[str, float] | None) -> str:
        return "-" if stats is None else f"{stats['mean']:.0f}% mean, {stats['max']:.0f}% max"

    def mib(value: int | None) -> str:
        return "-" if value is None else str(value)

    lines = [
        (f"tegrastats during the runs ({summary['samples']} samples every "
         f"{summary['interval_ms']} ms): GPU (GR3D) {load(summary['gpu_load_percent'])}; "
         f"memory controller {load(summary['emc_load_percent'])}; RAM used at most "
         f"{mib(summary['ram_used_mib'])} of {mib(summary['ram_total_mib'])} MiB"),
        "",
    ]
    if summary["rails_mw"]:
        lines += ["| power rail | mean mW | max mW |", "| --- | --- | --- |"]
        lines += [f"| {name} | {s['mean']:.0f} | {s['max']:.0f} |"
                  for name, s in summary["rails_mw"].items()]
        lines.append("")
    return lines


def plot_bench(results: dict[str, Any], path: Path) -> None:
    """Per-frame latency over the stream: the pipeline's stages stacked, and the model-only
    time for comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_frame = results["pipeline"]["per_frame"]
    x = np.asarray(per_frame["index"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    layers = [np.asarray(per_frame[f"{s}_ms"]) for s in PIPELINE_STAGES]
    top.stackplot(x, layers, labels=PIPELINE_STAGES, alpha=0.85)
    top.plot(x, per_frame["latency_ms"], color="black", linewidth=0.8, label="end to end")
    top.set_ylabel("ms")
    top.set_title("full pipeline: per-frame latency by stage (decode start to mask written)")
    top.legend(loc="upper right", fontsize=7, ncol=3)
    model_only = results["model_only"]["per_frame_ms"]
    in_pipeline = sum(np.asarray(per_frame[f"{s}_ms"]) for s in ("H2D", "compute", "D2H"))
    bottom.plot(np.arange(len(model_only)), model_only, label="model only (frames in memory)")
    bottom.plot(x, in_pipeline, label="model inside the pipeline (H2D + compute + D2H)")
    bottom.axvline(results["warmup_frames"] - 0.5, color="grey", linestyle=":",
                   label="warm-up excluded before this")
    bottom.set_xlabel("frame")
    bottom.set_ylabel("ms")
    bottom.legend(loc="upper right", fontsize=7)
    fig.suptitle(f"{results['backend']} on {results['device']}, "
                 f"{results['spec']['height']}x{results['spec']['width']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

