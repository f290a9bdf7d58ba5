"""TensorRT backend: engines built from the exported graphs (function bodies stripped so the
parser takes the SoftMaskedAttention plugin), cached on disk, run on device buffers of a thin CUDA
layer (``softmask.runtime.cuda_driver``, cuda-python's driver bindings). No torch.

Per video the state lives on the device in two buffer sets (ping-pong): a graph reads one set and
writes the other. Every buffer is allocated once, so each execution context gets its tensor
addresses once: one context per graph and parity (eight: the frame encoder's graph and the three
per-frame graphs that run after it, docs/runtime.md), which share one activation memory (they
run one at a time on one stream). TensorRT re-runs each plugin layer's ``onShapeChange`` at the
first enqueue after an address change (NvInferRuntime.h, IPluginV3OneRuntime); binding once and
one warm-up enqueue per context at load time keep that, and the kernel loading it does, out of
the frames. Per frame only the uint8 frame (and annotation) goes up and the labels (plus the N
``active`` flags after init/annotate) come down.

UNVERIFIED: it has not run on TensorRT or a GPU. It follows the TensorRT 10 Python API
documentation (named I/O tensors, ``execute_async_v3``, ``USER_MANAGED`` context memory) and
is tested on CPU against fakes of TensorRT and of the CUDA driver bindings (tests/fake_tensorrt.py,
tests/fake_cuda.py). Please report what fails on a real TensorRT host.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from softmask.errors import BackendUnavailable, ExportError
from softmask.export.spec import FEATURE_NAMES, GRAPH_NAMES, NEXT_SUFFIX, STATE_NAMES
from softmask.plugins import library_digests, load_into_tensorrt
from softmask.runtime.backend import FrameOutput
from softmask.runtime.cuda_driver import Device, DeviceBuffer
from softmask.runtime.engine_cache import EngineCache
from softmask.runtime.tensorrt_build import import_tensorrt, load_engines

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30
# The ring buffer's time axis in fg [1, N, W, C], fg_valid [1, N, W], bg [1, Qb, W, C],
# bg_valid [1, Qb, W] (frame_graphs.py); active [1, N] has none.
WINDOW_AXIS = 2
PARITIES = (0, 1)


def check_tensorrt_available(device: int = 0) -> tuple[Any, Device]:
    """The tensorrt module and the CUDA device, once both are known to be present.

    Raises:
        BackendUnavailable: no tensorrt module, no CUDA driver bindings, or no device ``device``
            (what is missing is said).
    """
    trt = import_tensorrt()
    return trt, Device(device)


def _numpy_dtype(trt: Any, dtype: Any) -> np.dtype:
    table = {
        trt.float32: np.float32,
        trt.float16: np.float16,
        trt.bool: np.bool_,
        trt.uint8: np.uint8,
        trt.int32: np.int32,
        trt.int64: np.int64,
    }
    if dtype not in table:
        raise ExportError(f"engine I/O tensor of TensorRT type {dtype} has no numpy equivalent")
    return np.dtype(table[dtype])


def _create_context(trt: Any, engine: Any) -> Any:
    """An execution context without memory of its own (the backend gives it the shared one)."""
    strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
    if strategy is not None:
        return engine.create_execution_context(strategy.USER_MANAGED)
    return engine.create_execution_context_without_device_memory()


def _memory_size(engine: Any) -> int:
    size = getattr(engine, "device_memory_size_v2", None)  # TensorRT >= 10.1
    return int(engine.device_memory_size if size is None else size)


def _set_memory(context: Any, address: int, size: int) -> None:
    if hasattr(context, "set_device_memory"):  # TensorRT >= 10.1
        context.set_device_memory(address, size)
    else:
        context.device_memory = address


class TensorRTBackend:
    """``Backend`` running ``export``'s graphs as TensorRT engines (UNVERIFIED, see module doc).

    Args:
        export: a ``StreamingExport``.
        device: CUDA device index.
        cache_dir: engine cache folder (default ``$SOFTMASK_CACHE/engines``, else
            ``~/.cache/softmask/engines``); keys hash the stripped ONNX bytes, the TensorRT
            version, the GPU name, the plugin and kernel libraries and the build settings. Builds
            share a timing cache there (one per TensorRT and GPU).
        with_scores: also download the float32 [N, H, W] object scores per frame.
        workspace_bytes: TensorRT workspace limit for the build.

    ``warmup_seconds`` is the time of the warm-up enqueues at load (part of setup).

    Raises:
        BackendUnavailable: no tensorrt module, no CUDA driver bindings or device, the plugin
            library is missing or does not load, or a cached engine was built for another
            TensorRT, GPU or plugin.
        ExportError: parsing or building an engine failed, the plugin was not used, or an
            engine's I/O is not the export's.
    """

    name = "tensorrt"

    def __init__(
        self,
        export: Any,
        device: int = 0,
        cache_dir: str | Path | None = None,
        with_scores: bool = False,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    ) -> None:
        trt, gpu = check_tensorrt_available(device)
        load_into_tensorrt()  # a no-op when this process has the plugin registered already
        libraries = library_digests()
        self._trt = trt
        self._gpu = gpu
        self.spec = export.spec
        self.precision = export.precision
        self.with_scores = with_scores
        self.device = f"cuda:{device} ({gpu.name})"
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._trt_logger)
        cache = EngineCache(cache_dir)
        settings = {"precision": export.precision, "workspace_bytes": workspace_bytes}
        with gpu.current():
            self._stream = gpu.stream()
            self._engines = load_engines(
                trt, self._trt_logger, self._runtime, export, cache, gpu.name, settings, libraries
            )
            self._allocate()
            self._contexts = self._bind()
            start = time.perf_counter()
            self._warm_up()
            self.warmup_seconds = time.perf_counter() - start
        # The engines each per-frame graph runs, in order (the frame encoder's first in a
        # shared-encoder export; its maps stay in device buffers between the two).
        self._chains = {graph: export.chain(graph) for graph in GRAPH_NAMES}
        self._parity = 0
        self.reset()
        logger.info("tensorrt %s backend on %s (warm-up %.3f s)", trt.__version__, self.device,
                    self.warmup_seconds)

    # --- load time ----------------------------------------------------------------------------

    def _tensor_buffer(self, name: str) -> DeviceBuffer:
        """A device buffer shaped as ``name`` in the engines (the same in every graph)."""
        engine = next(e for e in self._engines.values()
                      if e.get_tensor_mode(name) != self._trt.TensorIOMode.NONE)
        shape = tuple(engine.get_tensor_shape(name))
        if any(int(d) < 0 for d in shape):
            raise ExportError(f"engine tensor {name!r} has dynamic shape {shape}; the streaming "
                              "graphs are static")
        return self._gpu.buffer(shape, _numpy_dtype(self._trt, engine.get_tensor_dtype(name)))

    def _allocate(self) -> None:
        """Every buffer the graphs touch, once: frame, annotation, labels, scores, two state sets,
        and one activation memory for all contexts (the largest any engine needs)."""
        names = {engine.get_tensor_name(i) for engine in self._engines.values()
                 for i in range(engine.num_io_tensors)}
        self._io = {n: self._tensor_buffer(n)
                    for n in ("frame", "annotation", *FEATURE_NAMES, "labels", "scores")
                    if n in names}
        self._states = [{n: self._tensor_buffer(n) for n in STATE_NAMES} for _ in PARITIES]
        size = max(_memory_size(e) for e in self._engines.values())
        self._scratch = (self._gpu.buffer((max(size, 1),), np.uint8), size)

    def _bind(self) -> dict[tuple[str, int], Any]:
        """One context per (graph, parity), every I/O tensor's address set once."""
        contexts = {}
        for graph, engine in self._engines.items():
            for parity in PARITIES:
                context = _create_context(self._trt, engine)
                _set_memory(context, self._scratch[0].address, self._scratch[1])
                state_in, state_out = self._states[parity], self._states[1 - parity]
                buffers = {**self._io, **state_in,
                           **{n + NEXT_SUFFIX: state_out[n] for n in STATE_NAMES}}
                for index in range(engine.num_io_tensors):
                    name = engine.get_tensor_name(index)
                    if name not in buffers:
                        raise ExportError(f"engine {graph!r} has I/O tensor {name!r}, which the "
                                          "streaming export does not define")
                    if not context.set_tensor_address(name, buffers[name].address):
                        raise ExportError(f"TensorRT refused the address of {name!r} in {graph!r}")
                contexts[graph, parity] = context
        return contexts

    def _warm_up(self) -> None:
        """Enqueue every context once on zeroed buffers: TensorRT runs each plugin layer's
        ``onShapeChange`` (kernel loading, PTX JIT) at a context's first enqueue."""
        for buffer in [*self._io.values(), *self._states[0].values(), *self._states[1].values()]:
            buffer.zero(self._stream)
        for (graph, parity), context in self._contexts.items():
            if not context.execute_async_v3(self._stream.handle):
                raise BackendUnavailable(f"TensorRT warm-up of graph {graph!r} (parity {parity}) "
                                         "failed (see its log)")
        self._stream.synchronize()

    # --- the Backend interface ----------------------------------------------------------------

    @property
    def _state(self) -> dict[str, DeviceBuffer]:
        return self._states[self._parity]

    def reset(self) -> None:
        with self._gpu.current():
            for buffer in self._state.values():
                buffer.zero(self._stream)

    def advance_empty(self) -> None:
        """``push_empty`` on the device: each ring buffer moves one slot into the other set, the
        newest slot zero (nothing valid); ``active`` is copied."""
        source, target = self._states[self._parity], self._states[1 - self._parity]
        with self._gpu.current():
            for name in STATE_NAMES:
                src, dst = source[name], target[name]
                if len(src.shape) <= WINDOW_AXIS:
                    dst.copy_from(src, self._stream)
                    continue
                slot = int(np.prod(src.shape[WINDOW_AXIS + 1:], dtype=np.int64)) * src.dtype.itemsize
                window = src.shape[WINDOW_AXIS]
                rows = int(np.prod(src.shape[:WINDOW_AXIS], dtype=np.int64))
                # One shifted copy moves every row's slots 1..W-1 to 0..W-2; it also carries each
                # row's first slot into the previous row's last one, which the memset clears.
                dst.copy_from(src, self._stream, count=src.nbytes - slot, source_offset=slot)
                self._gpu.call("cuMemsetD2D8Async", dst.address + (window - 1) * slot,
                               window * slot, 0, slot, rows, self._stream.handle)
        self._parity = 1 - self._parity

    def read_state(self) -> dict[str, np.ndarray]:
        with self._gpu.current():
            return {n: self._state[n].download(self._stream) for n in STATE_NAMES}

    def write_state(self, state: dict[str, np.ndarray]) -> None:
        with self._gpu.current():
            kept = [self._state[n].upload(np.asarray(state[n]), self._stream) for n in STATE_NAMES]
            self._stream.synchronize()  # the host arrays in ``kept`` may go after this
        del kept

    def run(
        self, graph: str, frame: np.ndarray, annotation: np.ndarray | None = None
    ) -> FrameOutput:
        with self._gpu.current():
            sent = [self._io["frame"].upload(frame, self._stream)]
            if annotation is not None:
                sent.append(self._io["annotation"].upload(annotation, self._stream))
            for part in self._chains[graph]:
                if not self._contexts[part, self._parity].execute_async_v3(self._stream.handle):
                    raise BackendUnavailable(
                        f"TensorRT execution of graph {part!r} failed (see log)"
                    )
            self._parity = 1 - self._parity
            labels = self._io["labels"].download(self._stream)  # waits for the graph
            scores = self._io["scores"].download(self._stream) if self.with_scores else None
            active = None if graph == "step" else self._state["active"].download(self._stream)[0]
        del sent
        return FrameOutput(labels=labels, scores=scores, active=active)
