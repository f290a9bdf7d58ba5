"""Streaming runtime: backends (torch, onnxruntime, tensorrt) behind one interface, the per-frame
graph dispatch, the decode -> step -> write pipeline and its latency report. Docs: docs/runtime.md.
"""

from softmask.runtime.backend import Backend, FrameOutput
from softmask.runtime.factory import BACKENDS, create_backend, resolve_model
from softmask.runtime.onnxruntime_backend import OnnxRuntimeBackend
from softmask.runtime.pipeline import run_frames, run_video, stream_video
from softmask.runtime.stream import VideoStream
from softmask.runtime.tensorrt_backend import TensorRTBackend
from softmask.runtime.torch_backend import TorchBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "FrameOutput",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TorchBackend",
    "VideoStream",
    "create_backend",
    "resolve_model",
    "run_frames",
    "run_video",
    "stream_video",
]
