"""Streaming runtime: frame sources (folders, video files, URLs, cameras), backends (torch,
onnxruntime, tensorrt) behind one interface, the per-frame graph dispatch, the decode -> step ->
write pipeline with per-stage latency, export caching, and the pipeline benchmark.
Docs: docs/runtime.md.

The names below are imported on first use, so ``import softmask.runtime`` imports neither PyTorch
nor TensorRT; running an export with ONNX Runtime needs neither.
"""

from softmask.optional import lazy_attributes

_SOURCES = {
    "Annotations": "softmask.runtime.annotations",
    "resolve_annotations": "softmask.runtime.annotations",
    "Backend": "softmask.runtime.backend",
    "FrameOutput": "softmask.runtime.backend",
    "BACKENDS": "softmask.runtime.factory",
    "create_backend": "softmask.runtime.factory",
    "resolve_model": "softmask.runtime.factory",
    "OnnxRuntimeBackend": "softmask.runtime.onnxruntime_backend",
    "run_video": "softmask.runtime.pipeline",
    "stream_video": "softmask.runtime.pipeline",
    "RunSettings": "softmask.runtime.settings",
    "prepare_backend": "softmask.runtime.settings",
    "Frame": "softmask.runtime.sources",
    "FrameSource": "softmask.runtime.sources",
    "open_source": "softmask.runtime.sources",
    "VideoStream": "softmask.runtime.stream",
    "TensorRTBackend": "softmask.runtime.tensorrt_backend",
    "TorchBackend": "softmask.runtime.torch_backend",
}
__getattr__, __dir__ = lazy_attributes(__name__, _SOURCES)
