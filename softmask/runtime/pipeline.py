"""The streaming pipeline: a video folder in, label PNGs and a latency report out.

A frame's journey, top to bottom:

1. decode thread: read frame file -> uint8 [H, W, 3] -> bounded queue
2. main thread: ``VideoStream.process`` (which graph, backend run: preprocessing, model and
   postprocessing all inside the graph) -> uint8 labels [H, W]; wall time recorded
3. writer thread: bounded queue -> ``masks/<frame>.png`` (DAVIS palette, written atomically)
   and, if asked, ``overlay/<frame>.jpg``
4. ``report.json``: frame counts, graphs run, latency percentiles, backend and device

Frames of one video are processed in order on one backend; run several pipelines (one backend
each) for several videos. If a frame fails (unreadable file, wrong size), the frames before it
are written completely, and the error is raised after the writer has finished them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from softmask import __version__
from softmask.data.io import (
    list_frames,
    read_annotations,
    read_frame,
    write_label_png,
    write_overlay_jpeg,
)
from softmask.errors import InputError
from softmask.export.frame_graphs import StreamSpec
from softmask.export.streaming import StreamingExport, export_streaming, load_streaming_export
from softmask.runtime.backend import Backend
from softmask.runtime.factory import create_backend, resolve_model
from softmask.runtime.latency import latency_summary
from softmask.runtime.stream import VideoStream, check_annotation

logger = logging.getLogger(__name__)

MASKS_DIR = "masks"
OVERLAY_DIR = "overlay"
REPORT_NAME = "report.json"
EXPORT_DIR = "export"
_END = object()
# How often blocked queue operations look at the stop flag (seconds).
_POLL = 0.1


def _put_unless_stopped(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` on ``out``, giving up once ``stop`` is set; True if it was put."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _frame_name(frame: Path | np.ndarray, index: int) -> tuple[str, str]:
    """(output file stem, source named in errors) of a frame given as a file or an array."""
    if isinstance(frame, Path):
        return frame.stem, str(frame)
    return f"{index:05d}", f"frame {index}"


def _decode_frames(
    frames: Sequence[Path | np.ndarray], out: queue.Queue, stop: threading.Event
) -> None:
    """Decode thread: (index, frame array) per frame (files are read, arrays passed on), then
    _END; an error is queued and ends it."""
    for index, frame in enumerate(frames):
        try:
            item: Any = (index, read_frame(frame) if isinstance(frame, Path) else frame)
        except Exception as error:  # noqa: BLE001 - any failure must reach the main thread
            item = error
        if not _put_unless_stopped(out, item, stop) or isinstance(item, Exception):
            return
    _put_unless_stopped(out, _END, stop)


class _Writer(threading.Thread):
    """Writer thread: label PNGs (and overlays) for each (stem, frame, labels) until _END.

    After a write error it keeps draining the queue so the main thread never blocks; the error is
    re-raised by ``finish``.
    """

    def __init__(self, out_dir: Path, overlay: bool, queue_size: int) -> None:
        super().__init__(name="softmask-writer", daemon=True)
        self.items: queue.Queue = queue.Queue(maxsize=queue_size)
        self.masks_dir = out_dir / MASKS_DIR
        self.overlay_dir = out_dir / OVERLAY_DIR if overlay else None
        self.error: Exception | None = None
        self.written = 0

    def run(self) -> None:
        while (item := self.items.get()) is not _END:
            if self.error is not None:
                continue
            stem, frame, labels = item
            try:
                write_label_png(self.masks_dir / f"{stem}.png", labels)
                if self.overlay_dir is not None:
                    write_overlay_jpeg(self.overlay_dir / f"{stem}.jpg", frame, labels)
                self.written += 1
            except Exception as error:  # noqa: BLE001 - re-raised by finish()
                self.error = error

    def finish(self) -> None:
        self.items.put(_END)
        self.join()
        if self.error is not None:
            raise self.error


def stream_video(
    backend: Backend,
    frames: Sequence[Path | np.ndarray],
    annotations: dict[int, np.ndarray],
    out_dir: str | Path,
    overlay: bool = False,
    queue_size: int = 4,
) -> dict[str, Any]:
    """Run ``frames`` (in order) through ``backend``; write masks and ``report.json``.

    Args:
        backend: a ``Backend`` built for these frames' size and at least their object ids.
        frames: frame files (JPEG/PNG; masks are named after them) or uint8 [H, W, 3] RGB arrays
            (masks named ``00000.png``, ``00001.png``, ... by index).
        annotations: frame index -> uint8 label map [H, W] (checked per frame).
        out_dir: gets ``masks/<frame stem>.png``, ``overlay/<frame stem>.jpg`` (``overlay``) and
            ``report.json``.
        queue_size: capacity of each of the two queues (frames in flight per side).

    Returns:
        The report (also written to ``out_dir/report.json``): ``frames``, ``masks_written``,
        ``graphs`` (frames per graph; "none" = before the first tracked object), ``latency``
        (``latency_summary`` of the backend's per-frame wall time over frames that ran a graph),
        ``end_to_end_fps``, ``per_frame_ms``, ``backend``, ``device``, ``spec``.

    Raises:
        InputError: a frame file is unreadable or of the wrong size, or an annotation is invalid
            (the message names the file); masks of earlier frames are complete on disk, and no
            report is written.
        OSError: a mask could not be written (raised once the queue is drained).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    decoded: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    decoder = threading.Thread(
        target=_decode_frames, args=(frames, decoded, stop), name="softmask-decoder", daemon=True
    )
    writer = _Writer(out, overlay, queue_size)
    stream = VideoStream(backend)
    step_seconds: list[float] = []
    per_frame_ms: list[float | None] = []
    graphs: Counter[str] = Counter()
    started = time.perf_counter()
    decoder.start()
    writer.start()
    try:
        while (item := decoded.get()) is not _END:
            if writer.error is not None:
                break  # finish() raises it; later frames would not be written anyway
            if isinstance(item, Exception):
                raise item
            index, frame = item
            stem, source = _frame_name(frames[index], index)
            tick = time.perf_counter()
            result = stream.process(frame, annotations.get(index), source=source)
            seconds = time.perf_counter() - tick
            graphs[stream.last_graph] += 1
            ran = stream.last_graph != "none"
            per_frame_ms.append(seconds * 1e3 if ran else None)
            if ran:
                step_seconds.append(seconds)
            writer.items.put((stem, frame if overlay else None, result.labels))
    finally:
        stop.set()
        writer.finish()
        decoder.join()
    wall = time.perf_counter() - started
    report = {
        "softmask_version": __version__,
        "backend": backend.name,
        "device": backend.device,
        "precision": backend.precision,
        "spec": asdict(backend.spec),
        "frames": len(frames),
        "masks_written": writer.written,
        "graphs": dict(graphs),
        "latency": latency_summary(step_seconds),
        "end_to_end_fps": len(frames) / wall if wall > 0 else None,
        "per_frame_ms": per_frame_ms,
        "out_dir": str(out),
    }
    write_report(out / REPORT_NAME, report)
    logger.info(
        "%d frames, %s: p50 %.1f ms", len(frames), backend.name, report["latency"]["p50_ms"] or 0.0
    )
    return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON, atomically."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(report, stream, indent=2)
            stream.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_export(export: StreamingExport, height: int, width: int, source: str) -> None:
    spec = export.spec
    if (spec.height, spec.width) != (height, width):
        raise InputError(
            f"{source}: frames are {height}x{width}, the export in {export.directory} was "
            f"made for {spec.height}x{spec.width} (export again for this size)"
        )


def run_frames(
    frames: Sequence[Path | np.ndarray],
    annotations: Mapping[int, np.ndarray],
    out_dir: str | Path,
    backend: str = "onnxruntime",
    checkpoint: str | Path | Any = None,
    export_dir: str | Path | None = None,
    num_objects: int | None = None,
    temporal_window: int = 7,
    min_dim: int | None = None,
    max_dim: int | None = None,
    fp16: bool = False,
    overlay: bool = False,
    providers: Sequence[str] | None = None,
    engine_cache_dir: str | Path | None = None,
    queue_size: int = 4,
    annotation_sources: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Build ``backend`` for these frames and run ``stream_video``.

    Args:
        frames: frame files or uint8 [H, W, 3] RGB arrays, in order, all one size.
        annotations: frame index -> uint8 label map [H, W] (0 background, k = object k); objects
            may first appear at any frame.
        annotation_sources: frame index -> name used in errors about that annotation (e.g. its
            file); default "annotation of frame <index>".
        The other arguments are ``run_video``'s.

    Returns:
        The report of ``stream_video``.
    """
    if not frames:
        raise InputError("no frames to segment")
    first = frames[0]
    height, width = (read_frame(first) if isinstance(first, Path) else np.asarray(first)).shape[:2]
    _, first_source = _frame_name(first, 0)
    largest = max((int(a.max()) for a in annotations.values()), default=0)
    if largest == 0:
        raise InputError("the annotations contain no object (all pixels 0)")
    outside = sorted(i for i in annotations if not 0 <= i < len(frames))
    if outside:
        raise InputError(f"annotations for frame(s) {outside}, but there are {len(frames)} frames")
    out = Path(out_dir)
    export = None
    if backend != "torch" and export_dir is not None:
        export = load_streaming_export(export_dir)
        _check_export(export, height, width, first_source)
        slots = export.spec.num_objects
    else:
        slots = num_objects if num_objects is not None else largest
    sources = annotation_sources or {}
    for index, labels in annotations.items():
        source = sources.get(index, f"annotation of frame {index}")
        check_annotation(labels, height, width, slots, source)
    if backend == "torch":
        spec = StreamSpec(height, width, slots, temporal_window, min_dim, max_dim)
        engine = create_backend("torch", model=resolve_model(checkpoint), spec=spec)
    else:
        if backend == "tensorrt":
            # Fail before a long export when TensorRT is missing.
            from softmask.runtime.tensorrt_backend import import_tensorrt

            import_tensorrt()
        if export is None:
            export = export_streaming(
                resolve_model(checkpoint),
                out / EXPORT_DIR,
                height,
                width,
                slots,
                temporal_window,
                fp16,
                min_dim,
                max_dim,
            )
        engine = create_backend(
            backend, export=export, providers=providers, engine_cache_dir=engine_cache_dir
        )
    return stream_video(
        engine, frames, dict(annotations), out, overlay=overlay, queue_size=queue_size
    )


def run_video(
    video_dir: str | Path,
    annotations_dir: str | Path,
    out_dir: str | Path,
    backend: str = "onnxruntime",
    checkpoint: str | Path | Any = None,
    export_dir: str | Path | None = None,
    num_objects: int | None = None,
    temporal_window: int = 7,
    min_dim: int | None = None,
    max_dim: int | None = None,
    fp16: bool = False,
    overlay: bool = False,
    providers: Sequence[str] | None = None,
    engine_cache_dir: str | Path | None = None,
    queue_size: int = 4,
) -> dict[str, Any]:
    """Segment one video folder with ``backend`` and write masks and a report.

    Args:
        video_dir: folder of JPEG/PNG frames (e.g. DAVIS ``JPEGImages/480p/<seq>``), sorted by
            name; all frames one size.
        annotations_dir: label PNGs named like frames (``00000.png``); palette or greyscale,
            pixel value = object id. Any frame may carry one (objects may appear mid-video).
        out_dir: output folder (``masks/``, ``overlay/``, ``report.json``; ``export/`` when the
            graphs are exported on the fly).
        backend: "torch", "onnxruntime" or "tensorrt".
        checkpoint: checkpoint path, a HodorModel, or None for the bundled model. Not needed for
            onnxruntime/tensorrt when ``export_dir`` is given.
        export_dir: an ``export_streaming`` folder to use; None exports into ``out_dir/export``.
        num_objects: object slots (default: the largest id in the annotations; with
            ``export_dir``, the export's).
        temporal_window, min_dim, max_dim, fp16: export settings (ignored with ``export_dir``;
            fp16 only for exported backends).
        overlay: also write ``overlay/<frame>.jpg`` (labels blended over the frame).
        providers: ONNX Runtime execution providers (default: CUDA if available, then CPU).
        engine_cache_dir: TensorRT engine cache folder.
        queue_size: capacity of the decode and write queues.

    Returns:
        The report of ``stream_video``.

    Raises:
        InputError: missing/unreadable files, frames of another size, unknown object ids (the
            message names the file), or an export that does not fit the video.
        BackendUnavailable: the backend cannot run here.
    """
    frames = list_frames(video_dir)
    annotations = read_annotations(annotations_dir, frames)
    folder = Path(annotations_dir)
    sources = {index: str(folder / f"{frames[index].stem}.png") for index in annotations}
    return run_frames(
        frames,
        annotations,
        out_dir,
        backend=backend,
        checkpoint=checkpoint,
        export_dir=export_dir,
        num_objects=num_objects,
        temporal_window=temporal_window,
        min_dim=min_dim,
        max_dim=max_dim,
        fp16=fp16,
        overlay=overlay,
        providers=providers,
        engine_cache_dir=engine_cache_dir,
        queue_size=queue_size,
        annotation_sources=sources,
    )
