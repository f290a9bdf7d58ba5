"""TensorRT backend: engines built from the exported graphs (function bodies stripped so the
parser takes the SoftMaskedAttention plugin), cached on disk, run with device buffers from torch.

UNVERIFIED: it has not run on TensorRT or a GPU yet. It follows the TensorRT 10 Python API
documentation (named I/O tensors, ``execute_async_v3``) and
docs/deploy-tensorrt.md; on machines without TensorRT or CUDA it raises BackendUnavailable, which
is tested. Please report what fails on a real TensorRT host.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softmask.errors import BackendUnavailable, ExportError
from softmask.export.frame_graphs import NEXT_SUFFIX, STATE_NAMES
from softmask.export.streaming import StreamingExport
from softmask.model.video import VideoState, push_empty
from softmask.plugins import library_digests, load_into_tensorrt
from softmask.runtime.backend import FrameOutput
from softmask.runtime.engine_cache import EngineCache
from softmask.runtime.tensorrt_build import load_engines

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30


def import_tensorrt() -> Any:
    """``import tensorrt``, or BackendUnavailable saying how to get it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as error:
        raise BackendUnavailable(
            f"the tensorrt backend needs the TensorRT Python bindings: `import tensorrt` failed "
            f"({error}). Install TensorRT >= 10 for your CUDA version (Jetson: JetPack's "
            "python3-libnvinfer), or use backend='onnxruntime' or 'torch'."
        ) from error


def check_tensorrt_available() -> Any:
    """The tensorrt module, once TensorRT and a CUDA GPU are known to be present.

    Raises:
        BackendUnavailable: no tensorrt module or no CUDA device (what is missing is said).
    """
    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "the tensorrt backend needs a CUDA GPU visible to torch (it keeps the state in "
            "torch CUDA tensors); none is available"
        )
    return trt


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.bool: torch.bool,
        trt.uint8: torch.uint8,
        trt.int32: torch.int32,
        trt.int64: torch.int64,
    }
    if dtype not in table:
        raise ExportError(f"engine I/O tensor of TensorRT type {dtype} has no torch equivalent")
    return table[dtype]


class TensorRTBackend:
    """``Backend`` running ``export``'s graphs as TensorRT engines (UNVERIFIED, see module doc).

    Args:
        export: a ``StreamingExport``.
        device: CUDA device index.
        cache_dir: engine cache folder (default ``$SOFTMASK_CACHE/engines``, else
            ``~/.cache/softmask/engines``); keys hash the stripped ONNX bytes, the TensorRT version, the GPU name, the plugin and kernel libraries and
            the build settings. Builds share a timing cache there (one per TensorRT and GPU).
        with_scores: also download the float32 [N, H, W] object scores per frame.
        workspace_bytes: TensorRT workspace limit for the build.

    Raises:
        BackendUnavailable: no tensorrt module, no CUDA device, the plugin library is missing
            or does not load, or a cached engine was built for another TensorRT, GPU or plugin.
        ExportError: parsing or building an engine failed, or the plugin was not used.
    """

    name = "tensorrt"

    def __init__(
        self,
        export: StreamingExport,
        device: int = 0,
        cache_dir: str | Path | None = None,
        with_scores: bool = False,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    ) -> None:
        trt = check_tensorrt_available()
        load_into_tensorrt()  # a no-op when this process has the plugin registered already
        libraries = library_digests()
        self._trt = trt
        self.spec = export.spec
        self.precision = export.precision
        self.with_scores = with_scores
        self._device = torch.device("cuda", device)
        gpu = torch.cuda.get_device_name(self._device)
        self.device = f"cuda:{device} ({gpu})"
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._trt_logger)
        cache = EngineCache(cache_dir)
        settings = {"precision": export.precision, "workspace_bytes": workspace_bytes}
        self._stream = torch.cuda.Stream(self._device)
        with torch.cuda.device(self._device):
            self._engines = load_engines(
                trt, self._trt_logger, self._runtime, export, cache, gpu, settings, libraries
            )
            self._contexts = {n: e.create_execution_context() for n, e in self._engines.items()}
        with self._on_device():
            self._buffers = self._allocate(self._engines["step"])
        self._state: dict[str, torch.Tensor] = {}
        self._spare: dict[str, torch.Tensor] = {}
        self.reset()
        logger.info("tensorrt %s backend on %s", trt.__version__, self.device)

    def _allocate(self, engine: Any) -> dict[str, torch.Tensor]:
        """Device buffers for the labels and scores outputs (the same in every graph)."""
        buffers = {}
        for name in ("labels", "scores"):
            shape = tuple(engine.get_tensor_shape(name))
            dtype = _torch_dtype(self._trt, engine.get_tensor_dtype(name))
            buffers[name] = torch.empty(shape, dtype=dtype, device=self._device)
        return buffers

    def _empty_state(self) -> dict[str, torch.Tensor]:
        engine = self._engines["step"]
        return {
            name: torch.zeros(
                tuple(engine.get_tensor_shape(name)),
                dtype=_torch_dtype(self._trt, engine.get_tensor_dtype(name)),
                device=self._device,
            )
            for name in STATE_NAMES
        }

    def _on_device(self) -> contextlib.ExitStack:
        """Make this backend's GPU and stream current: buffers are allocated and written on the
        stream the engines run on, so no cross-stream ordering is needed."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.cuda.device(self._device))
        stack.enter_context(torch.cuda.stream(self._stream))
        return stack

    def reset(self) -> None:
        # Two state sets, swapped after every run: a graph never reads and writes one buffer.
        with self._on_device():
            self._state = self._empty_state()
            self._spare = self._empty_state()

    def advance_empty(self) -> None:
        with self._on_device():
            shifted = push_empty(VideoState(*(self._state[n] for n in STATE_NAMES)))
            for name in STATE_NAMES:
                self._state[name].copy_(getattr(shifted, name))

    def read_state(self) -> dict[str, np.ndarray]:
        with self._on_device():
            return {n: self._state[n].cpu().numpy() for n in STATE_NAMES}

    def write_state(self, state: dict[str, np.ndarray]) -> None:
        with self._on_device():
            for name in STATE_NAMES:
                target = self._state[name]
                target.copy_(torch.from_numpy(np.asarray(state[name])).to(target.dtype))

    def run(
        self, graph: str, frame: np.ndarray, annotation: np.ndarray | None = None
    ) -> FrameOutput:
        context = self._contexts[graph]
        with self._on_device():
            inputs = {"frame": torch.from_numpy(np.ascontiguousarray(frame)).to(self._device)}
            if annotation is not None:
                inputs["annotation"] = torch.from_numpy(np.ascontiguousarray(annotation)).to(
                    self._device
                )
            addresses = {**inputs, **self._state, **self._buffers}
            addresses.update({n + NEXT_SUFFIX: self._spare[n] for n in STATE_NAMES})
            for name, tensor in addresses.items():
                context.set_tensor_address(name, tensor.data_ptr())
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise BackendUnavailable(f"TensorRT execution of graph {graph!r} failed (see log)")
            self._state, self._spare = self._spare, self._state
            labels = self._buffers["labels"].cpu()
            scores = self._buffers["scores"].cpu().numpy() if self.with_scores else None
            active = None if graph == "step" else self._state["active"].cpu().numpy()[0]
        return FrameOutput(labels=labels.numpy(), scores=scores, active=active)
