"""Engine builds and the engine cache, on CPU against ``fake_tensorrt`` (TensorRT's documented
behaviour): plugin layers named after the exported nodes, detailed profiling verbosity, the timing
cache kept across builds, progress lines, and cache keys and notes that follow the plugin."""

from __future__ import annotations

import json
import logging

import fake_tensorrt
import onnx
import pytest
from fake_tensorrt import FakeCreator, FakePluginRegistry

from softmask.errors import BackendUnavailable, ExportError
from softmask.ops import onnx_op
from softmask.runtime import tensorrt_build
from softmask.runtime.engine_cache import EngineCache, engine_cache_key
from softmask.runtime.tensorrt_build import (
    TimingCacheFile,
    build_serialized_engine,
    engine_layer_names,
    load_engines,
)

SMA = FakeCreator("SoftMaskedAttention", "1")
LIBRARIES = {"plugin_library": "libsoftmask_trt_plugin.so", "plugin_sha256": "a" * 64, "kernels_sha256": "b" * 64}


def _trt(progress_monitor: bool = True):
    registry = FakePluginRegistry()
    registry.register_creator(SMA, "")
    return fake_tensorrt.make_module(registry, progress_monitor=progress_monitor)


# B, I, S, E of the standalone op model (all dynamic), as one optimisation profile.
SHAPES = {
    "query": ((1, 1, 32), (1, 13, 32), (2, 40, 32)),
    "key": ((1, 1, 32), (1, 64, 32), (2, 256, 32)),
    "value": ((1, 1, 32), (1, 64, 32), (2, 256, 32)),
    "mask": ((1, 1, 1), (1, 13, 64), (2, 40, 256)),
}
THIS_GPU = b"fake-timing-cache:NVIDIA Fake GPU\n"


def _stripped_model() -> bytes:
    model = onnx_op.standalone_model(2)
    onnx_op.strip_function_bodies(model)
    return model.SerializeToString()


def _static_model() -> onnx.ModelProto:
    """The standalone model with every axis fixed (as the streaming export's graphs are)."""
    model = onnx_op.standalone_model(2)
    sizes = {"B": 1, "I": 13, "S": 64, "E": 32}
    for value in [*model.graph.input, *model.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_value = sizes[dim.dim_param]
    return model


def _build(trt, timing_cache=None, expected=1, shapes=SHAPES) -> bytes:
    return build_serialized_engine(
        trt, trt.Logger(), _stripped_model(), "sma.onnx", expected, "fp32", 1 << 20, timing_cache,
        shapes=shapes,
    )


def test_the_engine_inspector_names_the_plugin_layer():
    # The parser names a layer after its node; the exporter names the node SoftMaskedAttention_<i>.
    trt = _trt()
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(_build(trt))
    assert engine_layer_names(trt, engine) == ["SoftMaskedAttention_0"]
    ((_network, config),) = trt.builds
    assert config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    assert info["Layers"][0]["LayerType"] == "PluginV3"


def test_a_network_without_the_plugin_layer_is_an_export_error():
    trt = _trt()
    with pytest.raises(ExportError, match="has 1 plugin layer"):
        _build(trt, expected=2)
    unregistered = fake_tensorrt.make_module(FakePluginRegistry())
    with pytest.raises(ExportError, match="Plugin not found"):
        _build(unregistered)


def test_the_timing_cache_is_reused_and_updated_across_builds(tmp_path):
    trt = _trt()
    cache = TimingCacheFile(tmp_path / "timing.cache")
    _build(trt, cache)
    assert cache.path.read_bytes() == THIS_GPU + b"+timing"
    _build(trt, cache)
    # The second build started from the first one's timings and added its own.
    assert cache.path.read_bytes() == THIS_GPU + b"+timing+timing"


@pytest.mark.parametrize("stored", [b"fake-timing-cache:NVIDIA Other GPU\n+theirs", b"damaged"])
def test_a_timing_cache_tensorrt_refuses_is_replaced_by_a_fresh_one(tmp_path, caplog, stored):
    # setTimingCache returns false for another device's cache (NvInfer.h); an unreadable file
    # gives no cache at all. Either way the build starts empty and the file is overwritten.
    trt = _trt()
    cache = TimingCacheFile(tmp_path / "timing.cache")
    cache.path.write_bytes(stored)
    with caplog.at_level(logging.WARNING, logger=tensorrt_build.__name__):
        _build(trt, cache)
    assert any("refused the timing cache" in r.getMessage() for r in caplog.records)
    assert cache.path.read_bytes() == THIS_GPU + b"+timing"


def test_dynamic_inputs_without_shapes_are_refused_before_the_build():
    trt = _trt()
    with pytest.raises(ExportError, match=r"inputs \['query', 'key', 'value', 'mask'\] have "
                                          "dynamic axes"):
        _build(trt, shapes=None)
    assert trt.builds == []
    # What TensorRT itself does with such a network: no engine.
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, trt.Logger()).parse(_stripped_model())
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None


def test_exported_nodes_carry_every_field_the_creator_lists():
    trt = _trt()
    logger = trt.Logger()
    network = trt.Builder(logger).create_network(0)
    assert trt.OnnxParser(network, logger).parse(_stripped_model())
    assert logger.messages == []
    # A node without num_splits (exports before the field was written) is warned about.
    model = onnx_op.standalone_model(2)
    onnx_op.strip_function_bodies(model)
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name != "num_splits"]
    del node.attribute[:]
    node.attribute.extend(kept)
    network = trt.Builder(logger).create_network(0)
    assert trt.OnnxParser(network, logger).parse(model.SerializeToString())
    assert [m for _, m in logger.messages] == [
        ("Attribute num_splits not found in plugin node! Ensure that the plugin creator has a "
         "default value defined or the engine may fail to build.")]


def test_a_creator_refuses_a_field_it_does_not_list():
    assert SMA.create_plugin("n", {"num_heads": 2, "num_splits": 0}) is not None
    assert SMA.create_plugin("n", {"num_heads": 2, "heads": 2}) is None


def test_builds_log_each_phase_with_the_elapsed_time(caplog):
    trt = _trt()
    with caplog.at_level(logging.INFO, logger=tensorrt_build.__name__):
        _build(trt)
    lines = [r.getMessage() for r in caplog.records]
    assert any("Building engine / Tactic selection (3 steps) started at" in line for line in lines), lines
    assert any("Tactic selection finished at" in line and line.endswith(" s") for line in lines), lines
    assert any(line.startswith("built sma.onnx in ") for line in lines), lines


def test_without_a_progress_monitor_a_heartbeat_reports_the_build(caplog, monkeypatch):
    trt = _trt(progress_monitor=False)
    trt.build_seconds = 0.3
    monkeypatch.setattr(tensorrt_build, "HEARTBEAT_SECONDS", 0.05)
    with caplog.at_level(logging.INFO, logger=tensorrt_build.__name__):
        _build(trt)
    beats = [r.getMessage() for r in caplog.records if r.getMessage().endswith("s elapsed")]
    assert beats and beats[0].startswith("building sma.onnx: ")
    assert trt.builds[0][1].progress_monitor is None


def test_engine_cache_key_follows_the_plugin_and_kernel_libraries():
    base = engine_cache_key(b"graph", "10.14.1", "NVIDIA H100", {"precision": "fp32"}, LIBRARIES)
    rebuilt_plugin = {**LIBRARIES, "plugin_sha256": "c" * 64}
    rebuilt_kernels = {**LIBRARIES, "kernels_sha256": "d" * 64}
    keys = {
        base,
        engine_cache_key(b"graph", "10.14.1", "NVIDIA H100", {"precision": "fp32"}, rebuilt_plugin),
        engine_cache_key(b"graph", "10.14.1", "NVIDIA H100", {"precision": "fp32"}, rebuilt_kernels),
    }
    assert len(keys) == 3
    assert base == engine_cache_key(b"graph", "10.14.1", "NVIDIA H100", {"precision": "fp32"}, dict(LIBRARIES))


@pytest.mark.parametrize(
    ("field", "other", "named"),
    [
        ("tensorrt", "10.3.0", "TensorRT version"),
        ("gpu", "Orin", "GPU"),
        ("plugin_sha256", "c" * 64, "plugin library"),
        ("kernels_sha256", "d" * 64, "kernel library"),
    ],
)
def test_a_cached_engine_built_elsewhere_is_refused_with_the_reason(tmp_path, field, other, named):
    cache = EngineCache(tmp_path)
    here = {"tensorrt": "10.14.1", "gpu": "NVIDIA H100", **LIBRARIES, "precision": "fp32"}
    cache.put("step", "k", b"engine built elsewhere", {**here, field: other})
    with pytest.raises(BackendUnavailable, match=named) as caught:
        cache.get_or_build("step", "k", lambda: b"fresh", here)
    assert "delete the file to rebuild" in str(caught.value)
    assert str(cache.path("step", "k")) in str(caught.value)


def test_a_cached_engine_without_a_note_is_refused(tmp_path):
    cache = EngineCache(tmp_path)
    cache.put("step", "k", b"engine", {"tensorrt": "10.14.1"})
    cache.path("step", "k").with_suffix(".json").unlink()
    with pytest.raises(BackendUnavailable, match="no readable note"):
        cache.get_or_build("step", "k", lambda: b"fresh", {"tensorrt": "10.14.1"})


def test_timing_caches_are_kept_per_tensorrt_version_and_gpu(tmp_path):
    cache = EngineCache(tmp_path)
    first = cache.timing_cache_path("10.14.1", "NVIDIA H100 80GB HBM3")
    assert first.parent == tmp_path
    assert first.name == "timing-10.14.1-NVIDIA-H100-80GB-HBM3.cache"
    assert cache.timing_cache_path("10.3.0", "Orin") != first


class _Export:
    """The parts of a StreamingExport that load_engines reads: one standalone graph."""

    def __init__(self, directory) -> None:
        path = directory / "step.onnx"
        path.write_bytes(_static_model().SerializeToString())
        self.graphs = {"step": path}
        self.manifest = {"graphs": {"step": {"op_nodes": 1}}}
        self.precision = "fp32"


def test_engines_are_cached_per_plugin_build_and_share_a_timing_cache(tmp_path):
    trt = _trt()
    export = _Export(tmp_path)
    cache = EngineCache(tmp_path / "engines")
    runtime = trt.Runtime(trt.Logger())
    settings = {"precision": "fp32", "workspace_bytes": 1 << 20}

    def load(libraries):
        return load_engines(trt, trt.Logger(), runtime, export, cache, "NVIDIA H100", settings, libraries)

    assert set(load(LIBRARIES)) == {"step"}
    assert set(load(LIBRARIES)) == {"step"}
    assert len(trt.builds) == 1  # the second backend found the engine in the cache
    rebuilt = {**LIBRARIES, "plugin_sha256": "e" * 64}
    load(rebuilt)
    assert len(trt.builds) == 2  # a rebuilt plugin never meets the old engine
    notes = [json.loads(p.read_text()) for p in sorted(cache.directory.glob("step-*.json"))]
    assert sorted(n["plugin_sha256"] for n in notes) == sorted(["a" * 64, "e" * 64])
    assert {n["tensorrt"] for n in notes} == {"10.14.1"}
    assert cache.timing_cache_path("10.14.1", "NVIDIA H100").read_bytes() == THIS_GPU + b"+timing+timing"
