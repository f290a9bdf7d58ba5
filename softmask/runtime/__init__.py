"""Streaming runtime: frame sources (folders, video files, URLs, cameras), backends (torch,
onnxruntime, tensorrt) behind one interface, the per-frame graph dispatch, the decode -> step ->
write pipeline with per-stage latency, export caching, and the pipeline benchmark.
Docs: docs/runtime.md.
"""

from softmask.runtime.annotations import Annotations, resolve_annotations
from softmask.runtime.backend import Backend, FrameOutput
from softmask.runtime.factory import BACKENDS, create_backend, resolve_model
from softmask.runtime.onnxruntime_backend import OnnxRuntimeBackend
from softmask.runtime.pipeline import run_video, stream_video
from softmask.runtime.settings import RunSettings, prepare_backend
from softmask.runtime.sources import Frame, FrameSource, open_source
from softmask.runtime.stream import VideoStream
from softmask.runtime.tensorrt_backend import TensorRTBackend
from softmask.runtime.torch_backend import TorchBackend

__all__ = [
    "BACKENDS",
    "Annotations",
    "Backend",
    "Frame",
    "FrameOutput",
    "FrameSource",
    "OnnxRuntimeBackend",
    "RunSettings",
    "TensorRTBackend",
    "TorchBackend",
    "VideoStream",
    "create_backend",
    "open_source",
    "prepare_backend",
    "resolve_annotations",
    "resolve_model",
    "run_video",
    "stream_video",
]
