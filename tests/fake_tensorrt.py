"""A stand-in for the ``tensorrt`` Python module that behaves like TensorRT where softmask relies on
it, so the TensorRT code paths run on machines without TensorRT.

Modelled on TensorRT 10's documented behaviour (NvInferRuntimeCommon.h, NvInfer.h and the Python
API reference), not on softmask's code:

- the plugin registry refuses a second creator with the same (name, version, namespace)
  (``registerCreator`` returns false) and ``loadLibrary`` returns null "if any of the plugins are
  already registered"; the parser and runtime look creators up with ``get_creator``;
  ``plugin_creator_list`` (the deprecated listing ONNX Runtime's TensorRT provider uses) holds
  only IPluginCreator (V1/V2) creators, ``all_creators`` every kind;
- the builder: ``create_network``, an ONNX parser that turns each node whose op_type has a
  registered creator into a ``PLUGIN_V3`` layer named after the node ("node_of_<output>" when
  the node has no name, as onnx-tensorrt does), builder configs with a timing cache, a progress
  monitor and a profiling verbosity, and an engine inspector that shows layer names only unless
  the engine was built with ``ProfilingVerbosity.DETAILED``;
- what TensorRT refuses: a network with dynamic inputs and no optimisation profile giving their
  shapes ("Network has dynamic or shape inputs, but no optimization profile has been defined",
  the build returns null); a timing cache from another device (``setTimingCache`` returns false
  unless ``ignoreMismatch``, NvInfer.h) or an unreadable one (``create_timing_cache`` gives
  None); a plugin field the creator does not list (its ``createPlugin`` fails). A creator field
  the node lacks is a parser warning, once per node (onnx-tensorrt's onnxOpImporters.cpp:
  "Attribute ... not found in plugin node!");
- execution (with a fake CUDA driver, tests/fake_cuda.py): I/O tensors are bound by address with
  ``set_tensor_address`` (false for an unknown name), a context created ``USER_MANAGED`` needs
  ``set_device_memory`` of at least the engine's size, ``execute_async_v3`` enqueues the engine's
  work on the given stream, and the first enqueue after an address change re-runs each plugin
  layer's ``onShapeChange`` (NvInferRuntime.h, IPluginV3OneRuntime::onShapeChange), counted in
  ``shape_changes``.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.machinery
import json
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

V3_CREATOR = "PLUGIN CREATOR_V3ONE"
V1_CREATOR = "PLUGIN CREATOR_V1"
# The SoftMaskedAttention creator's getFieldNames (plugins/softMaskedAttentionPlugin/
# softMaskedAttentionContract.cpp, the field collection).
SMA_FIELDS = ("num_heads", "num_splits")
PLUGIN_SELECTORS = ("plugin_version", "plugin_namespace")


@dataclass(frozen=True)
class FakeCreator:
    name: str
    plugin_version: str
    plugin_namespace: str = ""
    interface: str = V3_CREATOR
    field_names: tuple[str, ...] = SMA_FIELDS

    def create_plugin(self, name: str, fields: dict[str, Any]) -> object | None:
        """None (TensorRT: createPlugin returns null) for a field this creator does not list."""
        if any(f not in self.field_names for f in fields):
            return None
        return object()


@dataclass(frozen=True)
class FakeLibraryHandle:
    path: str


class FakePluginRegistry:
    """``tensorrt.IPluginRegistry``. ``libraries`` maps a library path to the creators its
    ``getCreators`` returns; a path not in it fails to load like a missing file."""

    def __init__(self, libraries: dict[str, list[FakeCreator]] | None = None) -> None:
        self.libraries = dict(libraries or {})
        self.load_calls: list[str] = []
        self._creators: dict[tuple[str, str, str], FakeCreator] = {}

    @staticmethod
    def _key(creator: FakeCreator, namespace: str | None = None) -> tuple[str, str, str]:
        ns = creator.plugin_namespace if namespace is None else namespace
        return (creator.name, creator.plugin_version, ns)

    def register_creator(self, creator: FakeCreator, plugin_namespace: str = "") -> bool:
        key = self._key(creator, plugin_namespace)
        if key in self._creators:
            return False
        self._creators[key] = creator
        return True

    def load_library(self, plugin_path: str) -> FakeLibraryHandle | None:
        self.load_calls.append(plugin_path)
        creators = self.libraries.get(plugin_path)
        if creators is None:
            return None
        if any(self._key(c) in self._creators for c in creators):
            return None
        for creator in creators:
            self._creators[self._key(creator)] = creator
        return FakeLibraryHandle(plugin_path)

    def dlopen_self_registering(self, plugin_path: str) -> None:
        """What ``dlopen`` of a library with a load-time registrar does: register each creator,
        the registry refusing duplicates."""
        for creator in self.libraries[plugin_path]:
            self.register_creator(creator, creator.plugin_namespace)

    def deregister_library(self, handle: FakeLibraryHandle) -> None:
        for creator in self.libraries.get(handle.path, []):
            self._creators.pop(self._key(creator), None)

    def get_creator(self, name: str, version: str, plugin_namespace: str = "") -> FakeCreator | None:
        return self._creators.get((name, version, plugin_namespace))

    @property
    def all_creators(self) -> list[FakeCreator]:
        return list(self._creators.values())

    @property
    def plugin_creator_list(self) -> list[FakeCreator]:
        return [c for c in self._creators.values() if c.interface == V1_CREATOR]


class LayerType(enum.Enum):
    PLUGIN_V3 = "PluginV3"
    CAST = "Cast"
    OTHER = "Other"


class ProfilingVerbosity(enum.Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class IProgressMonitor:
    """Base class of application progress monitors (``config.progress_monitor``)."""

    def __init__(self) -> None:
        pass


class DataType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    BOOL = np.bool_
    UINT8 = np.uint8
    INT32 = np.int32
    INT64 = np.int64


_ONNX_TYPES = {
    onnx.TensorProto.FLOAT: DataType.FLOAT,
    onnx.TensorProto.FLOAT16: DataType.HALF,
    onnx.TensorProto.BOOL: DataType.BOOL,
    onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.INT64: DataType.INT64,
}


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class ExecutionContextAllocationStrategy(enum.Enum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


@dataclass
class FakeLayer:
    name: str
    type: LayerType
    plugin: str = ""


@dataclass
class FakeTensor:
    name: str
    shape: tuple[int, ...]  # -1 for a dynamic axis
    dtype: DataType


@dataclass
class FakeNetwork:
    flags: int
    layers: list[FakeLayer] = field(default_factory=list)
    inputs: list[FakeTensor] = field(default_factory=list)
    outputs: list[FakeTensor] = field(default_factory=list)
    onnx_sha256: str = ""

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> FakeLayer:
        return self.layers[index]

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> FakeTensor:
        return self.inputs[index]


def _tensor(info: onnx.ValueInfoProto) -> FakeTensor:
    tensor = info.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return FakeTensor(info.name, shape, _ONNX_TYPES[tensor.elem_type])


class FakeParser:
    """An ONNX parser that knows a node only when a creator of its op_type is registered (plugin
    layer), or when it is a standard op (one layer per node). Model-local functions are not
    inlined: a node that only a function defines is an error, as for a plugin-less parser. The
    creator gets the node attributes it lists; each listed one the node lacks is a warning."""

    def __init__(self, network: FakeNetwork, registry: FakePluginRegistry, logger: Any) -> None:
        self.network = network
        self.registry = registry
        self.logger = logger
        self.errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse(self, data: bytes) -> bool:
        model = onnx.load_from_string(data)
        self.network.onnx_sha256 = hashlib.sha256(data).hexdigest()
        initializers = {i.name for i in model.graph.initializer}
        self.network.inputs = [_tensor(i) for i in model.graph.input if i.name not in initializers]
        self.network.outputs = [_tensor(o) for o in model.graph.output]
        for node in model.graph.node:
            name = node.name or f"node_of_{node.output[0]}"
            if node.domain in ("", "ai.onnx"):
                layer_type = LayerType.CAST if node.op_type == "Cast" else LayerType.OTHER
                self.network.layers.append(FakeLayer(name, layer_type))
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            version = attrs.get("plugin_version", b"1").decode()
            namespace = attrs.get("plugin_namespace", b"").decode()
            creator = self.registry.get_creator(node.op_type, version, namespace)
            if creator is None:
                self.errors.append(f"{name}: Plugin not found, are the plugin name, version, and namespace correct?")
                return False
            fields = {}
            for field_name in creator.field_names:
                if field_name in attrs:
                    fields[field_name] = attrs[field_name]
                else:
                    self.logger.messages.append(
                        ("WARNING", (f"Attribute {field_name} not found in plugin node! Ensure "
                                     "that the plugin creator has a default value defined or the "
                                     "engine may fail to build.")))
            if creator.create_plugin(name, fields) is None:
                self.errors.append(f"{name}: createPlugin failed")
                return False
            self.network.layers.append(FakeLayer(name, LayerType.PLUGIN_V3, node.op_type))
        return True


TIMING_HEADER = b"fake-timing-cache:"


class FakeTimingCache:
    """A timing cache: a header naming the device it was measured on, then the timings."""

    def __init__(self, device: str, timings: bytes = b"") -> None:
        self.device = device
        self.timings = timings

    def serialize(self) -> bytes:
        return TIMING_HEADER + self.device.encode() + b"\n" + self.timings


class FakeBuilderConfig:
    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.progress_monitor: IProgressMonitor | None = None
        self.memory_limits: dict[MemoryPoolType, int] = {}
        self.timing_cache: FakeTimingCache | None = None
        self.profiles: list[Any] = []

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.memory_limits[pool] = size

    def create_timing_cache(self, serialized: bytes) -> FakeTimingCache | None:
        """A new cache for this device from b"", the stored one, or None when unreadable."""
        data = bytes(serialized)
        if not data:
            return FakeTimingCache(self.module.device_name)
        if not data.startswith(TIMING_HEADER) or b"\n" not in data:
            return None
        device, timings = data[len(TIMING_HEADER):].split(b"\n", 1)
        return FakeTimingCache(device.decode(), timings)

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, FakeTimingCache):
            # pybind11 refuses None for an ITimingCache const& argument.
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache.device != self.module.device_name and not ignore_mismatch:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> FakeTimingCache | None:
        return self.timing_cache

    def add_optimization_profile(self, profile: Any) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class FakeOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, minimum: tuple[int, ...], opt: tuple[int, ...], maximum: tuple[int, ...]) -> None:
        self.shapes[name] = (tuple(minimum), tuple(opt), tuple(maximum))


class FakeBuilder:
    """``build_serialized_network`` reports three phases to the progress monitor, adds one
    entry to the timing cache per build, and serialises the network as JSON (the "engine")."""

    def __init__(self, module: types.ModuleType, logger: Any) -> None:
        self.module = module
        self.logger = logger

    def create_network(self, flags: int = 0) -> FakeNetwork:
        return FakeNetwork(flags)

    def create_builder_config(self) -> FakeBuilderConfig:
        return FakeBuilderConfig(self.module)

    def create_optimization_profile(self) -> FakeOptimizationProfile:
        return FakeOptimizationProfile()

    def build_serialized_network(self, network: FakeNetwork, config: FakeBuilderConfig) -> bytes | None:
        self.module.builds.append((network, config))
        dynamic = [t.name for t in network.inputs if -1 in t.shape]
        if dynamic and not any(all(n in p.shapes for n in dynamic) for p in config.profiles):
            self.logger.messages.append(
                ("ERROR", ("Network has dynamic or shape inputs, but no optimization profile "
                           "has been defined.")))
            return None
        time.sleep(self.module.build_seconds)
        monitor = config.progress_monitor
        phases = (("Building engine", None, 2), ("Tactic selection", "Building engine", 3))
        if monitor is not None:
            for name, parent, steps in phases:
                monitor.phase_start(name, parent, steps)
            for step in range(3):
                if not monitor.step_complete("Tactic selection", step):
                    return None
            monitor.phase_finish("Tactic selection")
            monitor.step_complete("Building engine", 0)
            monitor.phase_finish("Building engine")
        if config.timing_cache is not None:
            config.timing_cache.timings += b"+timing"
        detailed = config.profiling_verbosity == ProfilingVerbosity.DETAILED
        layers = [
            {"Name": layer.name, **({"LayerType": layer.type.value, "Plugin": layer.plugin} if detailed else {})}
            for layer in network.layers
        ]
        io = [
            {"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name, "mode": mode}
            for mode, tensors in (("INPUT", network.inputs), ("OUTPUT", network.outputs))
            for t in tensors
        ]
        return json.dumps({"layers": layers, "detailed": detailed, "io": io,
                           "onnx_sha256": network.onnx_sha256}).encode()


class FakeEngineInspector:
    def __init__(self, engine: dict[str, Any]) -> None:
        self.engine = engine

    def get_engine_information(self, fmt: LayerInformationFormat) -> str:
        if self.engine["detailed"]:
            return json.dumps({"Layers": self.engine["layers"]})
        return json.dumps({"Layers": [layer["Name"] for layer in self.engine["layers"]]})


DEVICE_MEMORY_BYTES = 4096


class FakeEngine:
    """A deserialised engine; ``device_memory_size_v2`` is its activation memory."""

    def __init__(self, module: types.ModuleType, data: bytes) -> None:
        self.module = module
        self.info = json.loads(data)
        self._io = {t["name"]: t for t in self.info["io"]}
        self.device_memory_size_v2 = DEVICE_MEMORY_BYTES
        self.contexts: list[FakeExecutionContext] = []

    @property
    def onnx_sha256(self) -> str:
        return self.info["onnx_sha256"]

    @property
    def num_io_tensors(self) -> int:
        return len(self.info["io"])

    def get_tensor_name(self, index: int) -> str:
        return self.info["io"][index]["name"]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._io[name]["shape"])

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self._io[name]["dtype"]]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode[self._io[name]["mode"]] if name in self._io else TensorIOMode.NONE

    @property
    def plugin_layers(self) -> int:
        return sum(1 for layer in self.info["layers"] if layer.get("LayerType") == "PluginV3")

    def create_engine_inspector(self) -> FakeEngineInspector:
        return FakeEngineInspector(self.info)

    def create_execution_context(
        self, strategy: ExecutionContextAllocationStrategy = ExecutionContextAllocationStrategy.STATIC
    ) -> FakeExecutionContext:
        context = FakeExecutionContext(self, strategy)
        self.contexts.append(context)
        return context


class FakeExecutionContext:
    """Runs its engine on a fake CUDA stream with ``module.executor(engine, inputs) -> outputs``
    (numpy arrays by tensor name) when the stream gets there."""

    def __init__(self, engine: FakeEngine, strategy: ExecutionContextAllocationStrategy) -> None:
        self.engine = engine
        self.user_managed = strategy == ExecutionContextAllocationStrategy.USER_MANAGED
        self.addresses: dict[str, int] = {}
        self.device_memory: tuple[int, int] | None = None
        self.address_calls = 0
        self.enqueues = 0
        self.shape_changes = 0
        self._changed = True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            return False
        self.address_calls += 1
        self.addresses[name] = int(memory)
        self._changed = True
        return True

    def set_device_memory(self, memory: int, size: int) -> None:
        self.device_memory = (int(memory), int(size))

    def execute_async_v3(self, stream_handle: int) -> bool:
        driver = self.engine.module.cuda
        engine = self.engine
        if self.user_managed:
            if self.device_memory is None or self.device_memory[1] < engine.device_memory_size_v2:
                return False
            driver.read(*self.device_memory)  # must be a live allocation
        tensors = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            if name not in self.addresses:
                return False  # "Neither address or allocator is set for output tensor"
            dtype = np.dtype(engine.get_tensor_dtype(name).value)
            shape = engine.get_tensor_shape(name)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            driver.read(self.addresses[name], nbytes)  # a live allocation large enough
            tensors[name] = (self.addresses[name], shape, dtype, nbytes)
        if self._changed:
            self.shape_changes += engine.plugin_layers or 1
            self._changed = False
        self.enqueues += 1

        def work() -> None:
            inputs = {
                n: np.frombuffer(driver.read(a, b), d).reshape(s).copy()
                for n, (a, s, d, b) in tensors.items()
                if engine.get_tensor_mode(n) == TensorIOMode.INPUT
            }
            outputs = engine.module.executor(engine, inputs)
            for n, (a, s, d, b) in tensors.items():
                if engine.get_tensor_mode(n) == TensorIOMode.OUTPUT:
                    driver.write(a, np.ascontiguousarray(outputs[n], d).reshape(s).tobytes())

        return driver.launch(stream_handle, work, "enqueue") == 0


class FakeRuntime:
    def __init__(self, module: types.ModuleType, logger: Any) -> None:
        self.module = module
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine:
        return FakeEngine(self.module, data)


class Logger:
    WARNING = 2
    INFO = 3

    def __init__(self, severity: int = WARNING) -> None:
        self.severity = severity
        self.messages: list[tuple[str, str]] = []


def _zeros(engine: FakeEngine, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    return {
        n: np.zeros(engine.get_tensor_shape(n), engine.get_tensor_dtype(n).value)
        for n in names if engine.get_tensor_mode(n) == TensorIOMode.OUTPUT
    }


def make_module(
    registry: FakePluginRegistry | None = None,
    version: str = "10.14.1",
    progress_monitor: bool = True,
    cuda: Any = None,
    executor: Callable[[FakeEngine, dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    device_name: str = "NVIDIA Fake GPU",
) -> types.ModuleType:
    """A module object to put in ``sys.modules["tensorrt"]``. ``progress_monitor=False`` models a
    TensorRT without ``IProgressMonitor``. ``module.builds`` records every (network, config)
    built; ``module.build_seconds`` makes each build take that long. ``cuda`` is the fake CUDA
    driver engines run on, ``executor`` computes an engine's outputs (default: zeros)."""
    module = types.ModuleType("tensorrt")
    # importlib.util.find_spec (torch._dynamo's trace rules call it) refuses a module without one.
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    module.__version__ = version
    registry = registry or FakePluginRegistry()
    module.registry = registry
    module.builds = []
    module.build_seconds = 0.0
    module.cuda = cuda
    module.executor = executor or _zeros
    module.device_name = device_name
    module.get_plugin_registry = lambda: registry
    module.Logger = Logger
    module.Builder = lambda logger: FakeBuilder(module, logger)
    module.OnnxParser = lambda network, logger: FakeParser(network, registry, logger)
    module.Runtime = lambda logger: FakeRuntime(module, logger)
    module.LayerType = LayerType
    module.ProfilingVerbosity = ProfilingVerbosity
    module.LayerInformationFormat = LayerInformationFormat
    module.MemoryPoolType = MemoryPoolType
    module.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    module.ExecutionContextAllocationStrategy = ExecutionContextAllocationStrategy
    module.TensorIOMode = TensorIOMode
    module.DataType = DataType
    for name, member in (("float32", DataType.FLOAT), ("float16", DataType.HALF),
                         ("bool", DataType.BOOL), ("uint8", DataType.UINT8),
                         ("int32", DataType.INT32), ("int64", DataType.INT64)):
        setattr(module, name, member)
    if progress_monitor:
        module.IProgressMonitor = IProgressMonitor
    return module
