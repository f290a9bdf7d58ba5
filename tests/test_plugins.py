"""softmask.plugins on CPU: finding the plugin library and the errors when it or TensorRT is missing.

TensorRT is replaced by ``fake_tensorrt`` (its registry's documented semantics), so these tests
run everywhere; the real registration is in test_plugins_tensorrt.py (marked ``tensorrt``).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import fake_tensorrt
import pytest
from fake_tensorrt import FakeCreator, FakePluginRegistry

from softmask.errors import BackendUnavailable
from softmask.plugins import library


@pytest.fixture()
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(library.ENV_VAR, raising=False)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF")
    return path


def test_env_var_naming_a_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _touch(tmp_path / "custom" / "libsoftmask_trt_plugin.so")
    monkeypatch.setenv(library.ENV_VAR, str(lib))
    monkeypatch.setattr(library, "candidate_paths", lambda name: [_touch(tmp_path / "other.so")])
    assert library.library_path() == lib.resolve()


def test_env_var_naming_a_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "libsoftmask_trt_plugin.so"
    monkeypatch.setenv(library.ENV_VAR, str(missing))
    with pytest.raises(BackendUnavailable) as caught:
        library.library_path()
    message = str(caught.value)
    assert library.ENV_VAR in message
    assert str(missing) in message
    assert "cmake --build" in message


def test_first_existing_candidate_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    first, second, third = (tmp_path / d / library.LIBRARY_NAME for d in ("a", "b", "c"))
    _touch(second)
    _touch(third)
    monkeypatch.setattr(library, "candidate_paths", lambda name: [first, second, third])
    assert library.library_path() == second


def test_missing_library_error_lists_searched_paths_and_build_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    searched = [tmp_path / "build" / "lib" / library.LIBRARY_NAME, tmp_path / "pkg" / library.LIBRARY_NAME]
    monkeypatch.setattr(library, "candidate_paths", lambda name: searched)
    with pytest.raises(BackendUnavailable) as caught:
        library.library_path()
    message = str(caught.value)
    for path in searched:
        assert str(path) in message
    assert "cmake -S . -B build" in message
    assert "TensorRT_ROOT" in message
    assert library.ENV_VAR in message
    assert "docs/deploy-tensorrt.md" in message


def test_default_candidates_start_with_the_cmake_build_tree() -> None:
    repo_root = Path(library.__file__).resolve().parents[2]
    for name in ("libsoftmask_trt_plugin.so", "libsoftmask_trt_plugin_autoregister.so"):
        candidates = library.candidate_paths(name)
        assert candidates[0] == repo_root / "build" / "lib" / name
        assert all(p.name == name for p in candidates)


def test_autoregister_library_has_its_own_variable_and_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    monkeypatch.delenv(library.AUTOREGISTER_ENV_VAR, raising=False)
    searched: list[str] = []

    def record(name: str) -> list[Path]:
        searched.append(name)
        return [tmp_path / name]

    monkeypatch.setattr(library, "candidate_paths", record)
    with pytest.raises(BackendUnavailable) as caught:
        library.autoregister_library_path()
    assert searched == ["libsoftmask_trt_plugin_autoregister.so"]
    assert "SOFTMASK_PLUGIN_AUTOREGISTER_LIB" in str(caught.value)

    lib = _touch(tmp_path / "elsewhere" / "libsoftmask_trt_plugin_autoregister.so")
    monkeypatch.setenv(library.AUTOREGISTER_ENV_VAR, str(lib))
    assert library.autoregister_library_path() == lib.resolve()


def test_load_without_tensorrt_says_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import tensorrt` raise ImportError, installed or not.
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match="import tensorrt"):
        library.load_into_tensorrt(path="/unused/libsoftmask_trt_plugin.so")


SMA = FakeCreator("SoftMaskedAttention", "1")


def _fake_tensorrt(monkeypatch: pytest.MonkeyPatch, registry: FakePluginRegistry) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.make_module(registry, version="10.14.1-fake"))


def test_load_registers_the_library_and_finds_the_creator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _touch(tmp_path / library.LIBRARY_NAME)
    registry = FakePluginRegistry({str(lib): [SMA]})
    _fake_tensorrt(monkeypatch, registry)
    handle = library.load_into_tensorrt(path=lib)
    assert handle is not None
    assert registry.load_calls == [str(lib)]
    assert registry.get_creator("SoftMaskedAttention", "1", "") is SMA


def test_load_uses_library_path_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _touch(tmp_path / library.LIBRARY_NAME)
    monkeypatch.setenv(library.ENV_VAR, str(lib))
    registry = FakePluginRegistry({str(lib.resolve()): [SMA]})
    _fake_tensorrt(monkeypatch, registry)
    library.load_into_tensorrt()
    assert registry.load_calls == [str(lib.resolve())]


def test_loading_twice_loads_once_and_returns_the_same_handle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # TensorRT's loadLibrary returns null for a library whose creators are registered already: a
    # second TensorRTBackend, or a second parametrised test, would fail if it were called again.
    lib = _touch(tmp_path / library.LIBRARY_NAME)
    registry = FakePluginRegistry({str(lib): [SMA]})
    _fake_tensorrt(monkeypatch, registry)
    first = library.load_into_tensorrt(path=lib)
    second = library.load_into_tensorrt(path=lib)
    third = library.load_into_tensorrt()
    assert first is second is third is not None
    assert registry.load_calls == [str(lib)]


def test_loading_after_the_self_registering_library_loads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dynamic = _touch(tmp_path / library.LIBRARY_NAME)
    autoregister = _touch(tmp_path / library.AUTOREGISTER_LIBRARY_NAME)
    registry = FakePluginRegistry({str(dynamic): [SMA], str(autoregister): [SMA]})
    registry.dlopen_self_registering(str(autoregister))
    _fake_tensorrt(monkeypatch, registry)
    assert library.load_into_tensorrt(path=dynamic) is None
    assert registry.load_calls == []
    assert registry.get_creator("SoftMaskedAttention", "1", "") is SMA


def test_a_creator_in_another_namespace_or_version_does_not_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _touch(tmp_path / library.LIBRARY_NAME)
    registry = FakePluginRegistry({str(lib): [SMA]})
    registry.register_creator(FakeCreator("SoftMaskedAttention", "1", "other"), "other")
    registry.register_creator(FakeCreator("SoftMaskedAttention", "2"), "")
    _fake_tensorrt(monkeypatch, registry)
    assert library.load_into_tensorrt(path=lib) is not None
    assert registry.load_calls == [str(lib)]


def test_load_refused_by_tensorrt_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _touch(tmp_path / library.LIBRARY_NAME)
    _fake_tensorrt(monkeypatch, FakePluginRegistry())  # the path is unknown: loadLibrary fails
    with pytest.raises(BackendUnavailable, match="could not load") as caught:
        library.load_into_tensorrt(path=lib)
    assert "10.14.1-fake" in str(caught.value)


def test_load_without_the_creator_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _touch(tmp_path / library.LIBRARY_NAME)
    _fake_tensorrt(monkeypatch, FakePluginRegistry({str(lib): [FakeCreator("SoftMaskedAttention", "2")]}))
    with pytest.raises(BackendUnavailable, match="no creator 'SoftMaskedAttention' version '1'"):
        library.load_into_tensorrt(path=lib)


def test_library_digests_hash_the_plugin_and_the_kernel_library_this_process_mapped(
    tmp_path: Path,
) -> None:
    plugin = tmp_path / "build" / library.LIBRARY_NAME
    plugin.parent.mkdir()
    plugin.write_bytes(b"plugin v1")
    (plugin.parent / library.KERNEL_LIBRARY_NAME).write_bytes(b"kernels beside, not loaded")
    mapped = tmp_path / "elsewhere" / library.KERNEL_LIBRARY_NAME
    mapped.parent.mkdir()
    mapped.write_bytes(b"kernels v1")
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f10 r-xp 00000000 08:01 42 {mapped}\n")
    first = library.library_digests(plugin, maps)
    assert first["plugin_library"] == library.LIBRARY_NAME
    assert first["plugin_sha256"] == hashlib.sha256(b"plugin v1").hexdigest()
    assert first["kernels_sha256"] == hashlib.sha256(b"kernels v1").hexdigest()
    mapped.write_bytes(b"kernels v2")
    assert library.library_digests(plugin, maps)["kernels_sha256"] != first["kernels_sha256"]
    # No kernel library mapped: the kernels are the plugin's own (linked in), hashed with it.
    maps.write_text("")
    assert library.library_digests(plugin, maps)["kernels_sha256"] == library.KERNELS_IN_PLUGIN
    plugin.unlink()
    with pytest.raises(BackendUnavailable, match="missing"):
        library.library_digests(plugin, maps)


def test_loaded_plugin_library_is_read_from_the_memory_map(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    lib = "/opt/soft mask/lib/libsoftmask_trt_plugin_autoregister.so"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n"
        f"7f02-7f03 r-xp 00000000 08:01 2 {lib}\n"
    )
    assert library.loaded_plugin_library(maps) == Path(lib)
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n")
    assert library.loaded_plugin_library(maps) is None


def _plugin_config() -> dict:
    import yaml

    path = (
        Path(library.__file__).resolve().parents[2]
        / "plugins" / "softMaskedAttentionPlugin" / "SoftMaskedAttention_PluginConfig.yaml"
    )
    return yaml.safe_load(path.read_text())


def _within(bounds: dict[str, str], value: float) -> bool:
    """TensorRT OSS's PluginConfig convention: "=x" includes x, "x" excludes it, pinf/ninf."""

    def parse(bound: str) -> tuple[float, bool]:
        inclusive = bound.startswith("=")
        text = bound.lstrip("=")
        number = {"pinf": float("inf"), "ninf": float("-inf")}.get(text)
        return (float(text) if number is None else number), inclusive

    low, low_inclusive = parse(bounds["min"])
    high, high_inclusive = parse(bounds["max"])
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    return above and below


def test_plugin_config_declares_the_onnx_nodes_inputs_and_attributes() -> None:
    from softmask.ops import onnx_op

    config = _plugin_config()
    assert config["name"] == onnx_op.OP_TYPE == library.PLUGIN_NAME
    version = config["versions"][onnx_op.PLUGIN_VERSION]
    assert version["interface"] == "IPluginV3"
    assert tuple(version["inputs"]) == onnx_op.INPUT_NAMES
    assert version["input_dims"] == {"query": 3, "key": 3, "value": 3, "mask": 3, "alpha": 1, "key_padding_mask": 2}
    assert version["attributes_required"] == ["num_heads"]
    assert "num_heads" in onnx_op.ATTRIBUTE_NAMES
    assert onnx_op.HARD_ATTRIBUTE in version["attributes"]
    assert version["attribute_types"][onnx_op.HARD_ATTRIBUTE] == "int32"
    assert set(version["attribute_types"].values()) == {"int32"}
    for config_name, case in version["configs"].items():
        assert set(case["input_types"]) <= set(onnx_op.INPUT_NAMES), config_name


def test_plugin_config_bounds_admit_exactly_the_values_the_creator_accepts() -> None:
    # The creator accepts num_heads >= 1 and num_splits >= 0 (validateFields, testCreatorAndFields).
    options = _plugin_config()["versions"]["1"]["attribute_options"]
    assert _within(options["num_heads"], 1) and _within(options["num_heads"], 64)
    assert not _within(options["num_heads"], 0)
    assert _within(options["num_splits"], 0) and _within(options["num_splits"], 128)
    assert not _within(options["num_splits"], -1)
    # hard_mask: 0 or 1 (validateFields; testCreatorAndFields' hardMaskOtherThanZeroOrOneIsRejected).
    assert _within(options["hard_mask"], 0) and _within(options["hard_mask"], 1)
    assert not _within(options["hard_mask"], -1) and not _within(options["hard_mask"], 2)


def test_deploy_docs_give_the_onnxruntime_version_whose_tensorrt_provider_sees_the_plugin() -> None:
    # ONNX Runtime's TensorRT provider listed plugins with getPluginCreatorList (V1/V2 creators
    # only, plugins/tests/testRegistration.cpp) up to 1.21, and with getAllCreators from 1.22
    # (microsoft/onnxruntime PR #24211): the docs must give that floor and the library it dlopens.
    docs = Path(library.__file__).resolve().parents[2] / "docs" / "deploy-tensorrt.md"
    text = docs.read_text()
    section = text[text.index("## 7. ONNX Runtime"):text.index("## 7a.")]
    assert "getPluginCreatorList" in section and "getAllCreators" in section
    assert ">= 1.22" in section
    assert "trt_extra_plugin_lib_paths" in section and library.AUTOREGISTER_LIBRARY_NAME in section
