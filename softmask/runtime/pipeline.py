"""The streaming pipeline: a frame source in, masks (and overlays) and a report out.

A frame's journey, top to bottom:

1. decode thread: the source decodes the frame (``decode``) and hands it over: a bounded FIFO,
   or in live mode a hand-off that keeps only the newest frame (older ones are dropped and
   counted; annotated frames are never dropped). ``realtime`` paces a file at its frame rate.
2. main thread: waits for the frame (``queue``), ``VideoStream.process`` picks the graph and the
   backend runs it: host checks (``preprocess``), frame upload (``H2D``), graph (``compute``),
   labels download (``D2H``).
3. writer thread: waits for the labels (``write_queue``), writes the mask, overlay (``write``).
4. ``report.json`` (``softmask.runtime.report``): counts, graphs, setup times, per-stage
   percentiles, end-to-end latency.

The stages are contiguous, so for every frame they add up to its end-to-end latency (start of
decode to mask written). Frames of one video are processed in order on one backend; run one
pipeline per video for several videos. If a frame fails (unreadable, wrong size, decode error),
the frames before it are written completely, the videos finalised, a report with the error
written, and the error raised; Ctrl-C and SIGTERM do the same (the report says which).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from softmask.errors import InputError
from softmask.runtime.annotations import Annotations, resolve_annotations
from softmask.runtime.backend import STAGES, Backend
from softmask.runtime.manifest import check_resume, run_manifest, write_manifest
from softmask.runtime.outputs import REPORT_NAME, OutputFolder, OutputWriter, prepare_output_dir
from softmask.runtime.report import RunStats, run_report, write_report
from softmask.runtime.settings import RunSettings, prepare_backend
from softmask.runtime.sources import Frame, FrameSource, Pacer, open_source
from softmask.runtime.stream import VideoStream, check_annotation
from softmask.testing_hooks import pause_point

logger = logging.getLogger(__name__)

_END = object()
# How often blocked waits look at the stop flag (seconds).
_POLL = 0.1

Progress = Callable[[int, int, int], None]


class _Handoff:
    """Hands items from a producer thread to a consumer thread.

    Not live: a FIFO of ``capacity`` items; the producer waits while it is full. Live: the
    producer never waits; a frame not yet taken when a newer one arrives is dropped (counted),
    except annotated frames, errors and the end mark. Every wait gives up when the other side is
    gone (``give_up``, ``producer``), so no thread waits forever on a dead one.
    """

    def __init__(self, capacity: int, live: bool) -> None:
        self._items: deque[tuple[Any, bool]] = deque()
        self._cond = threading.Condition()
        self._capacity, self._live = capacity, live
        self.dropped = 0
        self.frames = 0  # frames handed over (decoded), dropped ones included

    def put(self, item: Any, keep: bool, give_up: Callable[[], bool]) -> bool:
        """Hand ``item`` over (``keep``: never drop it); False if ``give_up()`` became true
        while waiting for room. In live mode a newer frame replaces the frames waiting; the end
        mark and errors replace none."""
        with self._cond:
            if self._live and isinstance(item, _Decoded):
                kept = deque(entry for entry in self._items if entry[1])
                self.dropped += len(self._items) - len(kept)
                self._items = kept
            else:
                while len(self._items) >= self._capacity:
                    if give_up():
                        return False
                    self._cond.wait(_POLL)
            self._items.append((item, keep))
            self.frames += isinstance(item, _Decoded)
            self._cond.notify_all()
            return True

    def get(self, producer: threading.Thread) -> Any:
        """The next item; raises RuntimeError if ``producer`` ended without handing one over."""
        with self._cond:
            while not self._items:
                if not producer.is_alive() and not self._items:
                    raise RuntimeError(f"{producer.name} thread ended without a result")
                self._cond.wait(_POLL)
            item, _ = self._items.popleft()
            self._cond.notify_all()
            return item


@dataclass
class _Decoded:
    frame: Frame
    decode_start: float
    arrival: float


def _decode(
    source: Iterable[Frame],
    handoff: _Handoff,
    annotated: set[int],
    stop: threading.Event,
    pace_fps: float | None,
) -> None:
    """Decode thread: ``_Decoded`` per frame, then _END; an error is handed over and ends it."""
    try:
        pacer = Pacer(pace_fps) if pace_fps else None
        frames = iter(source)
        index = 0
        while not stop.is_set():
            if pacer is not None:
                pacer.wait(index)
            tick = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            item = _Decoded(frame, tick, time.perf_counter())
            if not handoff.put(item, frame.index in annotated, stop.is_set):
                return
            index += 1
    except Exception as error:  # noqa: BLE001 - any failure must reach the main thread
        handoff.put(error, True, stop.is_set)
        return
    handoff.put(_END, True, stop.is_set)


@dataclass
class _Record:
    """One processed frame on its way to the writer: outputs and timestamps (perf_counter s)."""

    decoded: _Decoded
    graph: str
    labels: np.ndarray
    stages: dict[str, float]
    model_end: float
    gpu_compute: float | None = None


class _Writer(threading.Thread):
    """Writer thread: each ``_Record``'s outputs and its stage times, until _END.

    After a write error it keeps draining the queue so the main thread never blocks; the error is
    re-raised by ``finish``.
    """

    def __init__(self, outputs: OutputWriter, capacity: int) -> None:
        super().__init__(name="softmask-writer", daemon=True)
        self.items: _Handoff = _Handoff(capacity, live=False)
        self._producer = threading.current_thread()  # the pipeline's thread, which feeds it
        self.outputs = outputs
        self.stats = RunStats()
        self.error: BaseException | None = None

    def run(self) -> None:
        while (record := self.items.get(self._producer)) is not _END:
            if self.error is not None:
                continue
            start = time.perf_counter()
            frame = record.decoded.frame
            try:
                self.outputs.write(frame.name, frame.timestamp, frame.rgb, record.labels)
                self._account(record, start, time.perf_counter())
            except Exception as error:  # noqa: BLE001 - re-raised by finish()
                self.error = error

    def _account(self, record: _Record, write_start: float, written: float) -> None:
        decoded = record.decoded
        times = {
            "decode": decoded.arrival - decoded.decode_start,
            **record.stages,
            "write_queue": write_start - record.model_end,
            "write": written - write_start,
        }
        model = (sum(record.stages.get(s, 0.0) for s in STAGES) if record.graph != "none"
                 else None)
        self.stats.add(decoded.frame.index, record.graph, times, written - decoded.decode_start,
                       model, record.gpu_compute, written)

    def put(self, record: _Record) -> None:
        """Queue ``record`` (waits for room while the writer runs)."""
        self.items.put(record, True, lambda: not self.is_alive())

    def finish(self) -> None:
        self.items.put(_END, True, lambda: not self.is_alive())
        self.join()
        try:
            self.outputs.close()
        finally:
            if self.error is not None:
                raise self.error


def _run_frame(stream: VideoStream, decoded: _Decoded, annotations: Annotations) -> _Record:
    """Segment one decoded frame; its stages from ``queue`` to ``D2H``."""
    start = time.perf_counter()
    frame = decoded.frame
    index = frame.index
    result = stream.process(
        frame.rgb, annotations.labels.get(index), frame.origin, annotations.source(index)
    )
    end = time.perf_counter()
    timings = dict(result.timings)
    gpu = timings.pop("GPU compute", None)
    # Host work around the backend call (checks, graph choice) is the preprocess stage.
    stages = {
        "queue": start - decoded.arrival,
        "preprocess": max(0.0, (end - start) - sum(timings.values())),
        **timings,
    }
    return _Record(decoded, stream.last_graph, result.labels, stages, end, gpu)


def stream_video(
    backend: Backend,
    source: FrameSource,
    annotations: Annotations | Mapping[int, np.ndarray],
    out_dir: OutputFolder | str | Path,
    *,
    overlay: bool = False,
    mask_video: bool = False,
    live: bool | None = None,
    realtime: bool = False,
    resume: bool = False,
    queue_size: int = 4,
    progress: Progress | None = None,
    setup: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``source``'s frames through ``backend`` in order; write outputs and ``report.json``.

    Args:
        backend: a ``Backend`` built for these frames' size and at least their object ids.
        source: the frames (``open_source``); masks are named after ``Frame.name``.
        annotations: frame index -> uint8 label map [H, W] (checked per frame), or
            ``Annotations`` (which also names each map's file in errors).
        out_dir: the ``prepare_output_dir`` result (an earlier run's outputs it holds for
            ``--overwrite`` are deleted now, before the first frame), or a folder; gets the files
            of ``softmask.runtime.outputs``.
        overlay, mask_video: the optional outputs (``softmask.runtime.outputs``).
        live: keep only the newest decoded frame when the model falls behind (default: the
            source's ``live``).
        realtime: pace the source at its frame rate (a file behaves like a camera).
        resume: keep existing mask images (not rewritten); frames are still run in order, as
            the model's state needs them.
        queue_size: capacity of the decode and write queues (not live).
        progress: called after each frame with (processed, decoded, dropped).
        setup: setup times to record (``PreparedBackend.setup``).

    Returns:
        The report (also written to ``out_dir/report.json``; see docs/runtime.md).

    Raises:
        InputError: a frame cannot be decoded or is of the wrong size, or an annotation is
            invalid (the message names the file or frame); earlier frames' outputs are complete,
            and the report (with ``error``) is written.
        OSError: an output could not be written (raised once the queue is drained).
    """
    if isinstance(out_dir, OutputFolder):
        out_dir.clear()
        out = out_dir.path
    else:
        out = Path(out_dir)
    if not isinstance(annotations, Annotations):
        annotations = Annotations(dict(annotations), {})
    live = source.live if live is None else live
    pace = (source.fps or None) if realtime else None
    if realtime and source.live:
        raise InputError(f"--realtime paces files; {source.name} is live already")
    handoff = _Handoff(queue_size, live)
    stop = threading.Event()
    decoder = threading.Thread(
        target=_decode, args=(source, handoff, set(annotations.labels), stop, pace),
        name="softmask-decoder", daemon=True,
    )
    video_outputs = source.kind in ("video", "url", "camera")
    writer = _Writer(
        OutputWriter(out, overlay, mask_video, video_outputs, source.fps, skip_existing=resume),
        queue_size,
    )
    stream = VideoStream(backend)
    processed = 0
    last_index = -1
    failure: BaseException | None = None
    started = time.perf_counter()
    decoder.start()
    writer.start()
    try:
        while (item := handoff.get(decoder)) is not _END:
            if writer.error is not None:
                break  # finish() raises it; later frames would not be written anyway
            if isinstance(item, BaseException):
                raise item
            record = _run_frame(stream, item, annotations)
            last_index = item.frame.index
            writer.put(record)
            processed += 1
            if progress is not None:
                progress(processed, last_index + 1, handoff.dropped)
            pause_point("run-frame-queued")
    except BaseException as error:
        failure = error
        raise
    finally:
        stop.set()
        try:
            writer.finish()
        except BaseException as error:
            failure = failure or error
            raise
        finally:
            decoder.join(timeout=5.0)
            wall = time.perf_counter() - started
            report = run_report(
                backend, source, writer.stats, writer.outputs, processed, handoff.frames,
                handoff.dropped, wall, live, realtime, setup=setup or {}, failure=failure,
                out=out, started=started,
            )
            write_report(out / REPORT_NAME, report)
    unused = sorted(i for i in annotations.labels if i > last_index)
    if unused:
        logger.warning(
            "annotation(s) of frame(s) %s were not used: %s ended after frame %d",
            unused, source.name, last_index,
        )
    logger.info("%d frames, %s: %s", processed, backend.name, report["latency"])
    return report


def check_annotations(found: Annotations, height: int, width: int, slots: int) -> None:
    """Raise InputError (naming the file) unless every annotation fits frames of height x width
    and ``slots`` object slots."""
    for index, labels in found.labels.items():
        check_annotation(labels, height, width, slots, found.source(index))


def run_source(
    source: FrameSource,
    annotations: str | Path | Sequence[str | Path] | Mapping[int, np.ndarray],
    out: OutputFolder,
    settings: RunSettings,
    *,
    overlay: bool = False,
    mask_video: bool = False,
    live: bool | None = None,
    realtime: bool = False,
    resume: bool = False,
    queue_size: int = 4,
    progress: Progress | None = None,
    on_export: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``run_video`` on an opened source, into a folder ``prepare_output_dir`` accepted.

    Annotations are read and checked, then the backend is built (the export taken from the cache
    or made) for the first frame's size, then the frames are streamed.
    """
    if isinstance(annotations, Mapping):
        found = Annotations(dict(annotations), {})
        found.check_indices(source)
    else:
        specs = [annotations] if isinstance(annotations, (str, Path)) else annotations
        found = resolve_annotations(specs, source)
    if found.largest_id == 0:
        raise InputError("the annotations contain no object (all pixels 0)")
    height, width = source.first_frame().rgb.shape[:2]
    if settings.export_dir is None:  # slots known: fail before a long export
        check_annotations(found, height, width, settings.num_objects or found.largest_id)
    prepared = prepare_backend(settings, height, width, found.largest_id, on_export)
    check_annotations(found, height, width, prepared.backend.spec.num_objects)
    manifest = run_manifest(source, found, prepared, overlay, mask_video)
    if resume:
        check_resume(out.path, manifest)
    write_manifest(out.path, manifest)
    return stream_video(
        prepared.backend, source, found, out, overlay=overlay, mask_video=mask_video,
        live=live, realtime=realtime, resume=resume, queue_size=queue_size,
        progress=progress, setup=prepared.setup,
    )


def run_video(
    source: str | Path | Sequence[np.ndarray | Path] | FrameSource,
    annotations: str | Path | Sequence[str | Path] | Mapping[int, np.ndarray],
    out_dir: str | Path,
    *,
    overlay: bool = False,
    mask_video: bool = False,
    live: bool | None = None,
    realtime: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    fps: float | None = None,
    queue_size: int = 4,
    progress: Progress | None = None,
    on_export: Callable[[str], None] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Segment one video with a backend; write masks (overlays) and a report.

    Everything a user can get wrong is checked before the model runs, in this order: settings,
    output folder, source, annotations, backend availability; then the backend is built for the
    first frame's size.

    Args:
        source: a folder of frames, a video file, a URL, a camera (``open_source``), frames in
            memory (uint8 [H, W, 3] arrays, named ``00000``... by index, or image files), or a
            ``FrameSource``.
        annotations: an annotation spec or list of them (``resolve_annotations``: a PNG for frame
            0, ``INDEX:PATH``, a folder), or frame index -> uint8 label map [H, W].
        out_dir: output folder (``softmask.runtime.outputs``).
        overlay, mask_video, live, realtime, resume, queue_size, progress: ``stream_video``'s.
        overwrite: replace an earlier run's outputs in ``out_dir`` (else they are refused).
        fps: frame rate of a folder or of frames in memory (default 24).
        on_export: called with each graph's name while exporting.
        **settings: ``RunSettings`` fields (backend, checkpoint, export_dir, num_objects,
            temporal_window, min_dim, max_dim, fp16, providers, engine_cache_dir, cache_dir,
            threads).

    Returns:
        The report of ``stream_video``, with setup times.

    Raises:
        InputError: bad settings, output folder, source, annotations or frames (one line naming
            the flag, file or frame).
        BackendUnavailable: the backend cannot run here (before any export).
    """
    run_settings = RunSettings(**settings)
    run_settings.check()
    out = prepare_output_dir(out_dir, overwrite=overwrite, resume=resume)
    with open_source(source, fps=fps) as frames:
        return run_source(
            frames, annotations, out, run_settings, overlay=overlay, mask_video=mask_video,
            live=live, realtime=realtime, resume=resume, queue_size=queue_size,
            progress=progress, on_export=on_export,
        )
