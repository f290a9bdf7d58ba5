"""The backend capability table (``softmask.runtime.factory.capabilities``) decides every refusal
of a flag that does not apply to a backend: in ``softmask run``'s settings, in parity, in the
precision search and in the serve repository. Each case checks the refusal against what the
backends really take (written out below, not read from the table), then flips the deciding field
of that backend's row and checks the refusal flips too: a wrong row, or a check that compares
names instead of reading the table, fails here."""

from __future__ import annotations

import dataclasses

import pytest

from softmask.errors import InputError
from softmask.eval.divergence import Tolerances
from softmask.runtime import factory
from softmask.runtime.factory import BACKENDS, CAPABILITIES, capabilities, create_backend
from softmask.runtime.settings import RunSettings

# What each backend takes, from the backends themselves: TorchBackend(model, spec, with_scores,
# threads) runs the checkpoint (no graphs, providers or engines); OnnxRuntimeBackend(export,
# providers, with_scores, threads, spin_wait, engine_cache_dir) builds engines only through the
# TensorRT provider; TensorRTBackend(export, device, cache_dir, with_scores, workspace_bytes) has
# no providers and no CPU threads to set.
TAKES = {
    "torch": {"--threads"},
    "onnxruntime": {"--fp16", "--export-dir", "--cache-dir", "--providers", "--threads"},
    "tensorrt": {"--fp16", "--export-dir", "--cache-dir", "--engine-cache"},
}
# flag -> (RunSettings field and a value, the row field that decides it)
FLAGS = {
    "--fp16": ({"fp16": True}, "exports_graphs"),
    "--export-dir": ({"export_dir": "export"}, "exports_graphs"),
    "--cache-dir": ({"cache_dir": "cache"}, "exports_graphs"),
    "--providers": ({"providers": ["CPUExecutionProvider"]}, "takes_providers"),
    "--engine-cache": ({"engine_cache_dir": "engines"}, "builds_engines"),
    "--threads": ({"threads": 2}, "takes_threads"),
}


def _named(value: str) -> str:
    """A test id that is not a bare backend name: conftest skips items whose keywords include
    "tensorrt" (the marker's name) when TensorRT is absent, and a bare id is such a keyword."""
    return f"<{value}>"


def _refusal(check) -> str | None:
    """The refusal's message, or None when ``check()`` accepts."""
    try:
        check()
    except InputError as error:
        return str(error)
    return None


def _flip(monkeypatch, backend: str, field: str) -> None:
    row = CAPABILITIES[backend]
    monkeypatch.setitem(CAPABILITIES, backend,
                        dataclasses.replace(row, **{field: not getattr(row, field)}))


@pytest.mark.parametrize("backend", BACKENDS, ids=_named)
@pytest.mark.parametrize("flag", FLAGS)
def test_each_backends_row_decides_each_run_flag(monkeypatch, backend, flag):
    given, field = FLAGS[flag]
    settings = RunSettings(backend=backend, **given)
    refused = _refusal(settings.check)
    if flag in TAKES[backend]:
        assert refused is None
    else:
        assert refused is not None and refused.startswith(flag) and "\n" not in refused
    _flip(monkeypatch, backend, field)
    assert (_refusal(settings.check) is None) == (refused is not None)


@pytest.mark.parametrize("providers", [["tensorrt"], ["TensorrtExecutionProvider", "cpu"]])
def test_onnxruntime_with_the_tensorrt_provider_takes_an_engine_cache(providers):
    RunSettings(backend="onnxruntime", providers=providers, engine_cache_dir="engines").check()
    message = _refusal(RunSettings(backend="onnxruntime", providers=["cuda"],
                                   engine_cache_dir="engines").check)
    assert message == ("--engine-cache applies to --backend tensorrt and to --providers tensorrt, "
                       "not --backend onnxruntime without it")


def test_the_run_refusals_name_the_backends_the_table_gives(monkeypatch):
    """The texts list the backends a flag applies to; they were written out by hand before."""
    assert _refusal(RunSettings(backend="torch", fp16=True).check) == (
        "--fp16 applies to the exported graphs (--backend onnxruntime or tensorrt); the torch "
        "backend runs the checkpoint as it is")
    assert _refusal(RunSettings(backend="tensorrt", threads=2).check) == (
        "--threads sets the CPU threads of torch and onnxruntime, not of tensorrt")
    assert _refusal(RunSettings(backend="torch", providers=["cpu"]).check) == (
        "--providers applies to --backend onnxruntime, not torch")
    _flip(monkeypatch, "tensorrt", "takes_providers")
    assert _refusal(RunSettings(backend="torch", providers=["cpu"]).check) == (
        "--providers applies to --backend onnxruntime or tensorrt, not torch")


def test_an_unknown_backend_is_one_line_naming_the_choices():
    expected = "unknown backend 'tflite'; choose one of ['torch', 'onnxruntime', 'tensorrt']"
    with pytest.raises(InputError) as caught:
        capabilities("tflite")
    assert str(caught.value) == expected
    with pytest.raises(InputError) as caught:
        create_backend("tflite")
    assert str(caught.value) == expected
    assert _refusal(RunSettings(backend="tflite").check) == (
        "--backend tflite: choose one of torch, onnxruntime, tensorrt")


class _Checked(Exception):
    """Raised where parity would check the backends' availability: its own checks passed."""


def _parity_checks(monkeypatch, reference: str, settings: RunSettings, **options) -> str | None:
    """parity_video's refusal (None: it got as far as checking the backends run here)."""
    from softmask.eval.parity import ParityOptions, parity_video

    def checked(name, providers=None):
        raise _Checked(name)

    monkeypatch.setattr(factory, "check_backend_available", checked)
    try:
        parity_video("frames", "annotations", settings,
                     ParityOptions(reference=reference, **options))
    except InputError as error:
        return str(error)
    except _Checked:
        return None
    raise AssertionError("parity_video went past its checks")


PAIRS = [(r, c) for r in BACKENDS for c in BACKENDS]


def _parity_takes(flag: str, reference_takes: bool, candidate_takes: bool) -> bool:
    if flag == "--threads":  # both backends get it, so each must take it
        return reference_takes and candidate_takes
    return reference_takes or candidate_takes  # given to the backend(s) that take it


@pytest.mark.parametrize(("reference", "candidate"), PAIRS)
@pytest.mark.parametrize("flag", ["--providers", "--engine-cache", "--cache-dir", "--threads"])
def test_parity_takes_a_flag_when_the_backends_do(monkeypatch, reference, candidate, flag):
    given, field = FLAGS[flag]
    settings = RunSettings(backend=candidate, **given)
    refused = _parity_checks(monkeypatch, reference, settings)
    takes = _parity_takes(flag, flag in TAKES[reference], flag in TAKES[candidate])
    assert (refused is None) == takes, refused
    if refused is not None:
        assert refused.startswith(flag) and "\n" not in refused
    for flipped in dict.fromkeys((reference, candidate)):
        with monkeypatch.context() as patch:
            _flip(patch, flipped, field)
            takes = _parity_takes(flag, (flag in TAKES[reference]) != (reference == flipped),
                                  (flag in TAKES[candidate]) != (candidate == flipped))
            assert (_parity_checks(patch, reference, settings) is None) == takes, flipped


@pytest.mark.parametrize(("reference", "candidate"), PAIRS)
def test_parity_fp16_needs_an_exported_candidate_and_a_torch_reference(
    monkeypatch, reference, candidate
):
    settings = RunSettings(backend=candidate, fp16=True)
    refused = _parity_checks(monkeypatch, reference, settings)
    takes = reference == "torch" and candidate != "torch"
    assert (refused is None) == takes, refused
    if refused is not None:
        assert refused.startswith("--fp16")


def test_parity_work_dir_needs_an_exported_backend(monkeypatch):
    refused = _parity_checks(monkeypatch, "torch", RunSettings(backend="torch"), work_dir="w")
    assert refused == "--work-dir is for exported graphs; both backends are torch"
    assert _parity_checks(monkeypatch, "torch", RunSettings(backend="onnxruntime"),
                          work_dir="w") is None


def test_parity_gives_each_backend_the_flags_its_row_takes():
    from softmask.eval.parity import backend_settings

    given = RunSettings(backend="onnxruntime", checkpoint="tiny", fp16=True,
                        providers=["tensorrt"], engine_cache_dir="engines", cache_dir="cache",
                        num_objects=3, temporal_window=5, threads=2)
    derived = backend_settings(given, "torch")
    assert list(derived) == ["torch", "onnxruntime"]
    assert derived["torch"] == RunSettings(backend="torch", checkpoint="tiny", num_objects=3,
                                           temporal_window=5, threads=2, with_scores=True)
    assert derived["onnxruntime"] == dataclasses.replace(given, with_scores=True)
    for setting in derived.values():
        setting.check()
    derived = backend_settings(dataclasses.replace(given, backend="tensorrt", providers=None,
                                                   threads=None), "onnxruntime")
    assert derived["onnxruntime"].engine_cache_dir is None  # no TensorRT provider given
    assert derived["tensorrt"].engine_cache_dir == "engines"


@pytest.mark.parametrize("backend", BACKENDS, ids=_named)
def test_the_precision_search_runs_on_backends_that_run_exports(monkeypatch, backend):
    from softmask.eval import precision

    monkeypatch.setattr(precision, "check_backend_available", lambda name, providers=None: None)
    settings = RunSettings(backend=backend)
    refused = _refusal(lambda: precision._check_backend(settings))
    assert (refused is None) == (backend in {"onnxruntime", "tensorrt"}), refused
    if refused is not None:
        assert refused == (f"--backend {backend}: the search compares exports; choose "
                           "onnxruntime or tensorrt")
    _flip(monkeypatch, backend, "exports_graphs")
    assert (_refusal(lambda: precision._check_backend(settings)) is None) == (refused is not None)


@pytest.mark.parametrize("flag", ["--fp16", "--export-dir", "--cache-dir"])
def test_the_precision_search_refuses_export_settings(monkeypatch, flag):
    from softmask.eval import precision

    monkeypatch.setattr(precision, "check_backend_available", lambda name, providers=None: None)
    given, _ = FLAGS[flag]
    refused = _refusal(lambda: precision._check_backend(RunSettings(**given)))
    assert refused is not None and refused.startswith(f"{flag}: the search exports every")


@pytest.mark.parametrize("graphs", ["in-process", "onnxruntime", "tensorrt", "python"], ids=_named)
def test_serve_graphs_on_the_cpu_need_a_runtime_that_runs_there(monkeypatch, graphs):
    from softmask.serve.repository import VARIANT_RUNTIMES, check_repository_settings

    def check():
        check_repository_settings(graphs, "cpu", max_streams=1, idle_timeout_s=1.0, instances=1)

    refused = _refusal(check)
    assert (refused is None) == (graphs != "tensorrt"), refused
    if refused is not None:
        assert refused == "--device cpu: tensorrt graphs (--graphs tensorrt) run on a GPU only"
    _flip(monkeypatch, VARIANT_RUNTIMES[graphs], "gpu_only")
    assert (_refusal(check) is None) == (refused is not None)


def test_the_parity_report_keeps_its_localisation_key():
    from softmask.eval.localize import Localization
    from softmask.eval.parity import ParityReport

    report = ParityReport("torch", "onnxruntime", [], 1.0, None, Tolerances.min_agreement,
                          Tolerances.score,
                          localization=Localization(3, "step", "labels", "computed here"))
    data = report.to_dict()
    assert "localization" not in data
    assert data["localisation"]["frame"] == 3 and data["localisation"]["verdict"] == "computed here"
