"""ONNX Runtime's TensorRT provider as a path for the plugin, checked on CPU: the provider and
session options softmask hands ONNX Runtime (the stripped graphs, the self-registering plugin
library, engine and timing caches), the state kept on the GPU, and the refusal on ONNX Runtime
< 1.22 (whose provider lists only V1/V2 plugin creators, microsoft/onnxruntime PR #24211).
ONNX Runtime's own session is replaced by a recorder: nothing here runs TensorRT."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import onnx
import onnxruntime as ort
import pytest

from softmask.errors import BackendUnavailable
from softmask.ops.onnx_op import DOMAIN, OP_TYPE
from softmask.runtime import onnxruntime_backend
from softmask.runtime.onnxruntime_backend import OnnxRuntimeBackend, select_providers
from softmask.runtime.settings import RunSettings

AVAILABLE = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def export(shared_export):
    return shared_export(64, 96, 3, 3, min_dim=48)


@pytest.fixture
def gpu_build(monkeypatch, tmp_path):
    """onnxruntime-gpu 1.22 with the TensorRT provider, and a built self-registering library."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(AVAILABLE))
    monkeypatch.setattr(ort, "__version__", "1.22.0")
    plugin = tmp_path / "libsoftmask_trt_plugin_autoregister.so"
    plugin.write_bytes(b"plugin")
    monkeypatch.setenv("SOFTMASK_PLUGIN_AUTOREGISTER_LIB", str(plugin))
    return plugin


class _Session:
    """Records what an InferenceSession was given; reports the first provider as used."""

    made: ClassVar[list[tuple[str, list]]] = []

    def __init__(self, path, sess_options=None, providers=None) -> None:
        _Session.made.append((path, providers))
        self._providers = [p[0] if isinstance(p, tuple) else p for p in providers]

    def get_providers(self):
        return self._providers


def test_tensorrt_provider_gets_the_plugin_the_caches_and_the_stripped_graphs(
    export, gpu_build, monkeypatch, tmp_path
):
    _Session.made = []
    monkeypatch.setattr(ort, "InferenceSession", _Session)
    uploads = []
    monkeypatch.setattr(OnnxRuntimeBackend, "reset", lambda self: uploads.append(self._device_type))
    backend = OnnxRuntimeBackend(export, providers=["tensorrt"], engine_cache_dir=tmp_path / "c")
    assert backend.device == "cuda (TensorrtExecutionProvider)"
    assert uploads == ["cuda"]  # the state's OrtValues live on the GPU
    assert len(_Session.made) == len(export.graphs)
    for path, providers in _Session.made:
        (name, options), cuda = providers
        assert (name, cuda) == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        assert options["trt_extra_plugin_lib_paths"] == str(gpu_build)
        assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "True"
        assert options["trt_engine_cache_path"].startswith(str(tmp_path / "c"))
        model = onnx.load(path)
        assert not [f for f in model.functions if (f.domain, f.name) == (DOMAIN, OP_TYPE)]
        # Every graph but the frame encoder's holds the plugin node.
        has_node = any(n.op_type == OP_TYPE for n in model.graph.node)
        assert has_node == (Path(path).stem != "features"), path


def test_tensorrt_provider_is_refused_in_one_line_before_onnxruntime_1_22(gpu_build, monkeypatch):
    monkeypatch.setattr(ort, "__version__", "1.21.1")
    with pytest.raises(BackendUnavailable) as caught:
        select_providers(["tensorrt"])
    assert "\n" not in str(caught.value) and ">= 1.22" in str(caught.value)
    assert select_providers(["cuda"]) == ["CUDAExecutionProvider"]  # other providers still go


def test_short_provider_names_and_the_engine_cache_flag(gpu_build):
    assert select_providers(["tensorrt"]) == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    assert select_providers(["cpu"]) == ["CPUExecutionProvider"]
    RunSettings(backend="onnxruntime", providers=["tensorrt"], engine_cache_dir="x").check()
    with pytest.raises(Exception, match="--engine-cache applies to --backend tensorrt"):
        RunSettings(backend="onnxruntime", providers=["cuda"], engine_cache_dir="x").check()


def test_without_the_plugin_library_the_provider_says_how_to_build_it(export, gpu_build,
                                                                       monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTMASK_PLUGIN_AUTOREGISTER_LIB", str(tmp_path / "missing.so"))
    with pytest.raises(BackendUnavailable, match="does not name an existing file"):
        onnxruntime_backend.tensorrt_provider(export, tmp_path)
