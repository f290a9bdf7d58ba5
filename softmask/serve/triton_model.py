"""The python-backend models of a softmask repository (``softmask.serve.repository``).

``StreamModel`` is ``softmask_stream``: it reads each request's FRAME (and optional ANNOTATION)
and the sequence batcher's CORRID/START/END controls, and answers LABELS (+ FRAME_INDEX, and
SCORES when configured) from the stream's ``VideoStream`` in a ``StreamTable``. The graphs run
in-process (softmask's ONNX Runtime backend; sessions shared by all streams) or in other models
of the server (``TritonGraphBackend``, BLS). A request that fails gets an error response naming
the problem; the other requests, and other streams, go on. A refused request (``InputError``) is
answered INVALID_ARG (HTTP 400), or UNAVAILABLE (503) for a full server; a failure of the server
itself (a graph model failed, a bug) is answered INTERNAL (500) with ``protocol.SERVER_FAULT`` in
its message, so clients do not blame the frame. A thread reaps idle streams.

Metrics (Triton's metrics endpoint): ``softmask_open_streams`` (gauge),
``softmask_streams_reaped_total`` and ``softmask_stream_frames_total`` (counters), labelled by
model instance.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from softmask.errors import InputError
from softmask.export.manifest import MANIFEST_NAME, StreamingExport, load_streaming_export
from softmask.serve.protocol import (
    ANNOTATION,
    END,
    FRAME,
    FRAME_INDEX,
    LABELS,
    SCORES,
    SERVER_FAULT,
    START,
    STREAM_KEY,
    TOO_MANY_STREAMS,
)
from softmask.serve.streams import StreamTable

logger = logging.getLogger("softmask.serve")

# Longest pause between two looks for idle streams (seconds).
_REAP_PERIOD_S = 1.0


def _import_pb() -> Any:
    import triton_python_backend_utils as pb  # only inside Triton's python backend

    return pb


def _parameters(model_config: dict[str, Any]) -> dict[str, str]:
    return {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}


def _setup_logging() -> None:
    """The stub's stderr goes to the server's log; show softmask's INFO lines there."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("softmask_stream %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _flag(pb: Any, request: Any, name: str) -> bool:
    tensor = pb.get_input_tensor_by_name(request, name)
    return tensor is not None and bool(tensor.as_numpy().reshape(-1)[0])


class _Metrics:
    """The model's Prometheus metrics; absent (no-ops) where the python backend lacks them."""

    def __init__(self, pb: Any, instance: str) -> None:
        self.enabled = hasattr(pb, "MetricFamily")
        if not self.enabled:
            return
        labels = {"instance": instance}
        family = pb.MetricFamily
        # A family must outlive its metrics: both are kept.
        self.families = [
            family("softmask_open_streams", "streams open on this instance", kind=family.GAUGE),
            family("softmask_streams_reaped_total", "streams reaped after idling",
                   kind=family.COUNTER),
            family("softmask_stream_frames_total", "frames answered", kind=family.COUNTER),
        ]
        self.open, self.reaped, self.frames = (f.Metric(labels=labels) for f in self.families)

    def update(self, table: StreamTable, frames: int = 0, reaped: int = 0) -> None:
        if not self.enabled:
            return
        try:
            self.open.set(table.open_count)
            if frames:
                self.frames.increment(frames)
            if reaped:
                self.reaped.increment(reaped)
        except Exception:  # metrics must never cost an answer
            logger.exception("metrics update failed; metrics are off from now on")
            self.enabled = False


class StreamModel:
    """softmask_stream (Triton python backend model interface)."""

    def initialize(self, args: dict[str, Any]) -> None:
        _setup_logging()
        self.pb = pb = _import_pb()
        config = json.loads(args["model_config"])
        params = _parameters(config)
        model_dir = Path(args["model_repository"])
        self.scores = params.get("scores") == "1"
        gpu = params.get("device") == "gpu"
        graphs = params["graphs"]
        if graphs == "in-process":
            from softmask.runtime.onnxruntime_backend import OnnxRuntimeBackend

            providers = ["CUDAExecutionProvider"] if gpu else ["CPUExecutionProvider"]
            base = OnnxRuntimeBackend(
                load_streaming_export(model_dir / "export"), providers=providers,
                with_scores=self.scores,
            )
        else:
            from softmask.serve.bls import TritonGraphBackend

            manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
            export = StreamingExport(model_dir, manifest, {})
            base = TritonGraphBackend(pb, export, with_scores=self.scores, gpu=gpu)
        self.table = StreamTable(
            base.new_stream, int(params["max_streams"]), float(params["idle_timeout_s"])
        )
        self.metrics = _Metrics(pb, args.get("model_instance_name", "0"))
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="softmask-reaper", daemon=True)
        self._reaper.start()
        logger.info(
            "%s ready: graphs %s on %s, at most %d streams, idle timeout %g s",
            args.get("model_instance_name"), graphs, base.device, self.table.max_streams,
            self.table.idle_timeout_s,
        )

    def _reap_loop(self) -> None:
        period = min(_REAP_PERIOD_S, self.table.idle_timeout_s / 4)
        while not self._stop.wait(period):
            reaped = self.table.reap_idle()
            if reaped:
                self.metrics.update(self.table, reaped=len(reaped))

    def _answer(self, request: Any) -> Any:
        pb = self.pb
        frame = pb.get_input_tensor_by_name(request, FRAME).as_numpy()
        annotation = pb.get_input_tensor_by_name(request, ANNOTATION)
        key = pb.get_input_tensor_by_name(request, STREAM_KEY)
        output, index = self.table.process(
            request.correlation_id(),
            frame,
            None if annotation is None else annotation.as_numpy(),
            start=_flag(pb, request, START),
            end=_flag(pb, request, END),
            key=None if key is None else key.as_numpy().tobytes(),
        )
        tensors = [
            pb.Tensor(LABELS, np.ascontiguousarray(output.labels, dtype=np.uint8)),
            pb.Tensor(FRAME_INDEX, np.array([index], np.int64)),
        ]
        if self.scores:
            tensors.append(pb.Tensor(SCORES, np.ascontiguousarray(output.scores, np.float32)))
        return pb.InferenceResponse(output_tensors=tensors)

    def _error(self, message: str, kind: str) -> Any:
        """A TritonError with status ``kind`` (INVALID_ARG, UNAVAILABLE, INTERNAL) where the
        python backend has status codes."""
        code = getattr(self.pb.TritonError, kind, None)
        if code is None:
            return self.pb.TritonError(message)
        return self.pb.TritonError(message, code)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses, answered = [], 0
        for request in requests:
            try:
                responses.append(self._answer(request))
                answered += 1
            except InputError as error:
                logger.info("refused: %s", error)
                kind = "UNAVAILABLE" if TOO_MANY_STREAMS in str(error) else "INVALID_ARG"
                responses.append(pb.InferenceResponse(error=self._error(str(error), kind)))
            except Exception as error:  # one failed request must not stop the others
                logger.exception("stream %s: %s", request.correlation_id(), SERVER_FAULT)
                message = (f"stream {request.correlation_id()}: {SERVER_FAULT}: "
                           f"{type(error).__name__}: {error}")
                responses.append(pb.InferenceResponse(error=self._error(message, "INTERNAL")))
        self.metrics.update(self.table, frames=answered)
        return responses

    def finalize(self) -> None:
        self._stop.set()
        self._reaper.join(timeout=5)
        self.table.close_all()
