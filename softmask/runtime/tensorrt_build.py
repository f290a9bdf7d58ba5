"""Building TensorRT engines from the exported graphs: parse (function bodies stripped), check the
plugin layers, build with a persistent timing cache and progress lines.

Needs only the ``tensorrt`` module handed in (no GPU tensors), so it is tested on CPU against a
fake of TensorRT's Python API (tests/fake_tensorrt.py). UNVERIFIED against a real TensorRT.

Progress: TensorRT reports build phases to an ``IProgressMonitor`` (TensorRT >= 10.0's Python
API); each phase start and end, and at most one step line per ``STEP_LOG_SECONDS``, is logged
with the elapsed time. Without ``IProgressMonitor`` a heartbeat thread logs the elapsed time
every ``HEARTBEAT_SECONDS`` instead, so a long first build (minutes on Jetson) is never silent.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from softmask.errors import BackendUnavailable, ExportError
from softmask.files import atomic_file
from softmask.ops.onnx_op import strip_function_bodies
from softmask.plugins import PLUGIN_NAME
from softmask.runtime.engine_cache import EngineCache, engine_cache_key

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
STEP_LOG_SECONDS = 5.0


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


class TimingCacheFile:
    """TensorRT's timing cache (measured tactic timings) kept in one file across builds.

    A timing cache is valid for one TensorRT version and GPU, so callers name the file after
    both (``EngineCache.timing_cache_path``). TensorRT itself rejects a foreign cache; it is then
    started afresh (``ignore_mismatch=False``) and overwritten after the build.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def attach(self, config: Any) -> None:
        """Give ``config`` this file's cache (an empty one when the file does not exist)."""
        data = self.path.read_bytes() if self.path.is_file() else b""
        cache = config.create_timing_cache(data)
        # TensorRT returns no cache for an unreadable file and refuses one measured on another
        # device (setTimingCache returns false): start empty, overwrite the file after the build.
        if cache is None or not config.set_timing_cache(cache, False):
            logger.warning("TensorRT refused the timing cache %s (another TensorRT or GPU, or "
                           "damaged); starting an empty one", self.path)
            data = b""
            if not config.set_timing_cache(config.create_timing_cache(b""), False):
                raise ExportError("TensorRT refused an empty timing cache")
        logger.info("timing cache: %s (%d bytes)", self.path, len(data))

    def save(self, config: Any) -> None:
        """Write ``config``'s cache (with this build's timings added) atomically."""
        cache = config.get_timing_cache()
        if cache is None:
            return
        data = bytes(cache.serialize())
        with atomic_file(self.path) as stream:
            stream.write(data)


def make_progress_monitor(trt: Any, label: str, clock: Callable[[], float] = time.monotonic) -> Any:
    """An ``IProgressMonitor`` logging ``label``'s build phases, or None when TensorRT has none."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _LoggingMonitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._start = clock()
            self._last_step_log = self._start
            self._lock = threading.Lock()

        def _elapsed(self) -> float:
            return clock() - self._start

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            where = f"{parent_phase} / {phase_name}" if parent_phase else phase_name
            logger.info("building %s: %s (%d steps) started at %.1f s", label, where, num_steps,
                        self._elapsed())

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                now = clock()
                if now - self._last_step_log >= STEP_LOG_SECONDS:
                    self._last_step_log = now
                    logger.info("building %s: %s step %d done, %.1f s elapsed", label, phase_name,
                                step + 1, now - self._start)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            logger.info("building %s: %s finished at %.1f s", label, phase_name, self._elapsed())

    return _LoggingMonitor()


@contextlib.contextmanager
def heartbeat(label: str, every: float | None = None,
              clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Log the elapsed time every ``every`` seconds (default HEARTBEAT_SECONDS) while the block
    runs."""
    every = HEARTBEAT_SECONDS if every is None else every
    stop = threading.Event()
    start = clock()

    def beat() -> None:
        while not stop.wait(every):
            logger.info("building %s: %.0f s elapsed", label, clock() - start)

    thread = threading.Thread(target=beat, name=f"softmask-build-heartbeat-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 1.0)


def plugin_layer_count(trt: Any, network: Any) -> int:
    """Number of IPluginV3 layers of a parsed network."""
    return sum(
        1 for i in range(network.num_layers) if network.get_layer(i).type == trt.LayerType.PLUGIN_V3
    )


def engine_layer_names(trt: Any, engine: Any) -> list[str]:
    """Layer names from the engine inspector. The engine must have been built with
    ``ProfilingVerbosity.DETAILED`` (``build_serialized_engine`` does) for layer details; with the
    default verbosity only names are listed, and the parser names a layer after its ONNX node."""
    info = json.loads(engine.create_engine_inspector().get_engine_information(
        trt.LayerInformationFormat.JSON))
    return [layer["Name"] if isinstance(layer, dict) else str(layer) for layer in info["Layers"]]


def build_serialized_engine(
    trt: Any,
    trt_logger: Any,
    onnx_bytes: bytes,
    source: str | os.PathLike[str],
    expected_plugins: int,
    precision: str,
    workspace_bytes: int,
    timing_cache: TimingCacheFile | None = None,
    label: str | None = None,
    shapes: Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]] | None = None,
) -> bytes:
    """Parse the stripped graph, check it holds ``expected_plugins`` plugin layers, build it.

    Args:
        onnx_bytes: the model with the op's function bodies stripped (so every parser version
            takes the plugin).
        source: the ONNX file, for messages.
        precision: "fp16" builds a strongly typed network (the fp16 export carries its types).
        timing_cache: reused and updated when given.
        label: what the progress lines call this build (default: the file name).
        shapes: (min, opt, max) per dynamic input, for one optimisation profile; graphs with
            static shapes (the streaming export's) need none.

    Raises:
        ExportError: the parser rejected the graph, the plugin was not used for every
            SoftMaskedAttention node, or the build failed.
    """
    label = label or Path(source).name
    builder = trt.Builder(trt_logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if precision == "fp16" and strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT's ONNX parser rejected {source}: {errors}")
    found = plugin_layer_count(trt, network)
    if found != expected_plugins:
        raise ExportError(
            f"{source}: the parsed network has {found} plugin layer(s), the export has "
            f"{expected_plugins} {PLUGIN_NAME} node(s); the plugin was not used for all"
        )
    dynamic = [
        network.get_input(i).name for i in range(network.num_inputs)
        if any(int(d) < 0 for d in network.get_input(i).shape)
    ]
    unshaped = [name for name in dynamic if name not in (shapes or {})]
    if unshaped:
        raise ExportError(
            f"{source}: inputs {unshaped} have dynamic axes; TensorRT builds them only with an "
            "optimisation profile: pass shapes={name: (min, opt, max)} for each"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    # Layer details (plugin type, formats) in the engine inspector and in Nsight traces.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (smallest, usual, largest) in shapes.items():
            profile.set_shape(name, tuple(smallest), tuple(usual), tuple(largest))
        config.add_optimization_profile(profile)
    if timing_cache is not None:
        timing_cache.attach(config)
    monitor = make_progress_monitor(trt, label)
    start = time.monotonic()
    if monitor is not None:
        config.progress_monitor = monitor
        serialized = builder.build_serialized_network(network, config)
    else:
        with heartbeat(label):
            serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {source} (see its log above)")
    logger.info("built %s in %.1f s", label, time.monotonic() - start)
    if timing_cache is not None:
        timing_cache.save(config)
    return bytes(serialized)


def load_engines(
    trt: Any,
    trt_logger: Any,
    runtime: Any,
    export: Any,
    cache: EngineCache,
    gpu: str,
    settings: Mapping[str, Any],
    libraries: Mapping[str, str],
) -> dict[str, Any]:
    """One deserialised engine per graph of a ``StreamingExport``, from ``cache`` or built first.

    Each graph is parsed with its function bodies stripped; the cache key and the note beside the
    engine name the stripped graph, TensorRT version, GPU, ``libraries`` (``library_digests()``)
    and ``settings`` ({"precision", "workspace_bytes"}). Builds share one timing cache per
    TensorRT version and GPU in the cache folder.

    Raises:
        BackendUnavailable: a cached engine was built elsewhere, or TensorRT cannot deserialise it.
        ExportError: parsing or building failed, or the plugin was not used for every node.
    """
    timing = TimingCacheFile(cache.timing_cache_path(trt.__version__, gpu))
    engines = {}
    for name, path in export.graphs.items():
        model = onnx.load(str(path))
        strip_function_bodies(model)
        data = model.SerializeToString()
        key = engine_cache_key(data, trt.__version__, gpu, settings, libraries)
        note = {
            "onnx": str(path),
            "onnx_sha256": hashlib.sha256(data).hexdigest(),
            "tensorrt": trt.__version__,
            "gpu": gpu,
            **libraries,
            **settings,
        }
        expected = export.manifest["graphs"][name]["op_nodes"]

        def build(data: bytes = data, path: Path = Path(path), expected: int = expected,
                  label: str = f"{name} ({Path(path).name})") -> bytes:
            return build_serialized_engine(
                trt, trt_logger, data, path, expected, export.precision,
                int(settings["workspace_bytes"]), timing, label=label,
            )

        engine = runtime.deserialize_cuda_engine(cache.get_or_build(name, key, build, note))
        if engine is None:
            raise BackendUnavailable(
                f"TensorRT could not deserialise {cache.path(name, key)} (see its log); "
                "delete the file to rebuild it"
            )
        engines[name] = engine
    return engines
