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
  the engine was built with ``ProfilingVerbosity.DETAILED``.
"""

from __future__ import annotations

import enum
import json
import time
import types
from dataclasses import dataclass, field
from typing import Any

import onnx

V3_CREATOR = "PLUGIN CREATOR_V3ONE"
V1_CREATOR = "PLUGIN CREATOR_V1"


@dataclass(frozen=True)
class FakeCreator:
    name: str
    plugin_version: str
    plugin_namespace: str = ""
    interface: str = V3_CREATOR


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


@dataclass
class FakeLayer:
    name: str
    type: LayerType
    plugin: str = ""


@dataclass
class FakeNetwork:
    flags: int
    layers: list[FakeLayer] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> FakeLayer:
        return self.layers[index]


class FakeParser:
    """An ONNX parser that knows a node only when a creator of its op_type is registered (plugin
    layer), or when it is a standard op (one layer per node). Model-local functions are not
    inlined: a node that only a function defines is an error, as for a plugin-less parser."""

    def __init__(self, network: FakeNetwork, registry: FakePluginRegistry) -> None:
        self.network = network
        self.registry = registry
        self.errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse(self, data: bytes) -> bool:
        model = onnx.load_from_string(data)
        for node in model.graph.node:
            name = node.name or f"node_of_{node.output[0]}"
            if node.domain in ("", "ai.onnx"):
                layer_type = LayerType.CAST if node.op_type == "Cast" else LayerType.OTHER
                self.network.layers.append(FakeLayer(name, layer_type))
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            version = attrs.get("plugin_version", b"1").decode()
            namespace = attrs.get("plugin_namespace", b"").decode()
            if self.registry.get_creator(node.op_type, version, namespace) is None:
                self.errors.append(f"{name}: Plugin not found, are the plugin name, version, and namespace correct?")
                return False
            self.network.layers.append(FakeLayer(name, LayerType.PLUGIN_V3, node.op_type))
        return True


class FakeTimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data


class FakeBuilderConfig:
    def __init__(self) -> None:
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.progress_monitor: IProgressMonitor | None = None
        self.memory_limits: dict[MemoryPoolType, int] = {}
        self.timing_cache: FakeTimingCache | None = None
        self.profiles: list[Any] = []

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.memory_limits[pool] = size

    def create_timing_cache(self, serialized: bytes) -> FakeTimingCache:
        return FakeTimingCache(bytes(serialized))

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
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
        return FakeBuilderConfig()

    def create_optimization_profile(self) -> FakeOptimizationProfile:
        return FakeOptimizationProfile()

    def build_serialized_network(self, network: FakeNetwork, config: FakeBuilderConfig) -> bytes | None:
        self.module.builds.append((network, config))
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
            config.timing_cache.data += b"+timing"
        detailed = config.profiling_verbosity == ProfilingVerbosity.DETAILED
        layers = [
            {"Name": layer.name, **({"LayerType": layer.type.value, "Plugin": layer.plugin} if detailed else {})}
            for layer in network.layers
        ]
        return json.dumps({"layers": layers, "detailed": detailed}).encode()


class FakeEngineInspector:
    def __init__(self, engine: dict[str, Any]) -> None:
        self.engine = engine

    def get_engine_information(self, fmt: LayerInformationFormat) -> str:
        if self.engine["detailed"]:
            return json.dumps({"Layers": self.engine["layers"]})
        return json.dumps({"Layers": [layer["Name"] for layer in self.engine["layers"]]})


class FakeEngine:
    def __init__(self, data: bytes) -> None:
        self.info = json.loads(data)

    def create_engine_inspector(self) -> FakeEngineInspector:
        return FakeEngineInspector(self.info)


class FakeRuntime:
    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine:
        return FakeEngine(data)


class Logger:
    WARNING = 2
    INFO = 3

    def __init__(self, severity: int = WARNING) -> None:
        self.severity = severity


def make_module(
    registry: FakePluginRegistry | None = None,
    version: str = "10.14.1",
    progress_monitor: bool = True,
) -> types.ModuleType:
    """A module object to put in ``sys.modules["tensorrt"]``. ``progress_monitor=False`` models a
    TensorRT without ``IProgressMonitor``. ``module.builds`` records every (network, config)
    built; ``module.build_seconds`` makes each build take that long."""
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    registry = registry or FakePluginRegistry()
    module.registry = registry
    module.builds = []
    module.build_seconds = 0.0
    module.get_plugin_registry = lambda: registry
    module.Logger = Logger
    module.Builder = lambda logger: FakeBuilder(module, logger)
    module.OnnxParser = lambda network, logger: FakeParser(network, registry)
    module.Runtime = FakeRuntime
    module.LayerType = LayerType
    module.ProfilingVerbosity = ProfilingVerbosity
    module.LayerInformationFormat = LayerInformationFormat
    module.MemoryPoolType = MemoryPoolType
    module.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    if progress_monitor:
        module.IProgressMonitor = IProgressMonitor
    return module
