"""A deployment install without PyTorch.

Here (torch installed): importing the CLI, ``softmask --help`` and argument errors, and the modules
behind run, bench, stream, serve and parity import no torch. In ``.venv-deploy`` (``pip install .``
without torch; ``scripts/test.sh`` makes it with ``scripts/setup_env.sh deploy``): ``softmask run``
on a synthetic clip from an export made here writes the masks this environment's ONNX Runtime run
writes, ``bench`` and ``parity`` between exports run, and the commands that need torch
say so in one line with exit code 4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softmask.cli import main
from softmask.data.io import read_label_png, write_label_png
from softmask.runtime.outputs import MASKS_DIR
from tests.videos import first_annotation, moving_objects

REPO = Path(__file__).resolve().parents[1]
DEPLOY_VENV = REPO / ".venv-deploy"
SETUP = "bash scripts/test.sh (it runs scripts/setup_env.sh deploy)"
# What `softmask run/bench/stream/serve/parity` import to run an export with ONNX Runtime.
DEPLOY_MODULES = (
    "softmask.cli",
    "softmask.runtime",
    "softmask.runtime.pipeline",
    "softmask.runtime.bench",
    "softmask.runtime.settings",
    "softmask.runtime.onnxruntime_backend",
    "softmask.runtime.tensorrt_build",
    "softmask.runtime.tensorrt_backend",
    "softmask.runtime.cuda_driver",
    "softmask.eval.parity",
    "softmask.eval.plot",
    "softmask.serve.server",
    "softmask.serve.embedded",
    "softmask.serve.client",
    "softmask.serve.repository",
    "softmask.serve.triton_model",
    "softmask.serve.graph_model",
    "softmask.serve.bls",
)


def _python(code: str, python: str | Path = sys.executable, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], check=False, capture_output=True, text=True,
                          timeout=120, **kwargs)


def _here_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["run", "--help"],
    ["run", "clip.mp4", "--annotations", "first.png", "--out", "out", "--window", "0"],
    ["bench", "--help"],
    ["parity", "--help"],
    ["serve", "start", "--help"],
    ["stream", "clip.mp4", "--annotations", "first.png", "--out", "out", "--in-flight", "0"],
])
def test_the_cli_its_help_and_argument_errors_import_no_torch(argv):
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules))\n"
        "import softmask.cli\n"
        "print('after import:', 'torch' in sys.modules)\n"
        f"sys.exit(softmask.cli.main({argv!r}))\n"
    )
    result = _python(code, env=_here_env())
    assert result.returncode in (0, 2), result.stderr
    assert "after import: False" in result.stdout
    assert "torch imported: False" in result.stdout, result.stdout


def test_the_modules_that_run_an_export_import_no_torch():
    code = (
        "import importlib, sys\n"
        f"for name in {DEPLOY_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, name\n"
        "softmask_runtime = importlib.import_module('softmask.runtime')\n"
        "softmask_runtime.RunSettings, softmask_runtime.OnnxRuntimeBackend\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = _python(code, env=_here_env())
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def deploy_softmask() -> Path:
    """``.venv-deploy``'s softmask script, after checking that the venv has no torch and holds
    this checkout's sources (a stale copy would test other code)."""
    python = DEPLOY_VENV / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"{DEPLOY_VENV} is missing: run {SETUP}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = _python("import importlib.util, sys; print(importlib.util.find_spec('torch'))",
                    python, env=env, cwd="/")
    assert found.stdout.strip() == "None", f"torch is installed in {DEPLOY_VENV}: {found.stdout}"
    where = _python("import softmask; print(softmask.__file__)", python, env=env, cwd="/")
    installed = Path(where.stdout.strip()).parent
    assert not installed.is_relative_to(REPO / "softmask"), "an editable install: not a deployment"
    ours = {p.relative_to(REPO / "softmask") for p in (REPO / "softmask").rglob("*.py")}
    theirs = {p.relative_to(installed) for p in installed.rglob("*.py")}
    stale = sorted(str(p) for p in ours ^ theirs) + sorted(
        str(p) for p in ours & theirs
        if (REPO / "softmask" / p).read_bytes() != (installed / p).read_bytes()
    )
    if stale:
        pytest.fail(f"{DEPLOY_VENV} holds other sources than this checkout ({stale[:3]}): run "
                    f"{SETUP}")
    return DEPLOY_VENV / "bin" / "softmask"


CLIP_FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory, shared_export) -> tuple[Path, Path, Path]:
    """A synthetic clip as PNG frames, its first frame's annotation in a folder, and the session's
    shared export of the tiny model for its size (made here, with torch)."""
    root = tmp_path_factory.mktemp("deploy")
    frames, annotations = root / "frames", root / "annotations"
    frames.mkdir()
    annotations.mkdir()
    for t, frame in enumerate(moving_objects(CLIP_FRAMES)):
        Image.fromarray(frame).save(frames / f"{t:05d}.png")
    write_label_png(annotations / "00000.png", first_annotation())
    return frames, annotations, shared_export(64, 96, 3, 3, min_dim=48).directory


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: read_label_png(p) for p in sorted((out / MASKS_DIR).glob("*.png"))}


def _deploy_run(softmask: Path, *args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(softmask), *map(str, args)], check=False, capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_a_deployment_install_runs_an_export_with_the_masks_of_this_environment(
    deploy_softmask, clip, tmp_path
):
    frames, annotations, export = clip
    here = tmp_path / "here"
    assert main(["-q", "run", str(frames), "--annotations", str(annotations), "--out", str(here),
                 "--export-dir", str(export)]) == 0
    deployed = tmp_path / "deployed"
    result = _deploy_run(deploy_softmask, "-q", "run", frames, "--annotations", annotations,
                         "--out", deployed, "--export-dir", export, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected, got = _masks(here), _masks(deployed)
    assert len(expected) == CLIP_FRAMES and got.keys() == expected.keys()
    for name, labels in expected.items():
        assert np.array_equal(got[name], labels), f"{name}: masks differ"
    assert any(labels.any() for labels in got.values())


def test_a_deployment_install_names_the_torch_extra_where_torch_is_needed(
    deploy_softmask, clip, tmp_path
):
    frames, annotations, _ = clip
    for args, names in (
        (("export", "--height", 64, "--width", 96, "--objects", 1, "--out", tmp_path / "e"),
         "exporting a model"),
        (("run", frames, "--annotations", annotations, "--out", tmp_path / "r"),
         "--export-dir"),
        (("run", frames, "--annotations", annotations, "--out", tmp_path / "t",
          "--backend", "torch"), "the torch backend"),
    ):
        result = _deploy_run(deploy_softmask, *args, cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 4, result.stderr
        assert len(lines) == 1 and "pip install 'softmask[torch]'" in lines[0], lines
        assert names in lines[0], lines[0]


def test_a_deployment_install_benches_an_export_and_checks_parity_between_exports(
    deploy_softmask, clip, tmp_path
):
    frames, annotations, export = clip
    bench = _deploy_run(deploy_softmask, "-q", "bench", frames, "--annotations", annotations,
                        "--out", tmp_path / "bench", "--export-dir", export, "--warmup", 2,
                        cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert "torch_threads" not in report["machine"]  # measured without torch
    parity = _deploy_run(deploy_softmask, "-q", "parity", frames, "--annotations", annotations,
                         "--reference", "onnxruntime", "--candidate", "onnxruntime",
                         "--export-dir", export, "--report", tmp_path / "parity.json",
                         cwd=tmp_path)
    assert parity.returncode == 0, parity.stderr
    result = json.loads((tmp_path / "parity.json").read_text())
    assert result["passed"] and len(result["frames"]) == CLIP_FRAMES


def test_serving_an_export_imports_no_torch(clip, tmp_path):
    # Here torch is installed, so an import of it on the way (also one inside a function) shows.
    _, _, export = clip
    code = (
        "import sys\n"
        "from softmask.serve.repository import write_repository\n"
        "from softmask.runtime.settings import RunSettings\n"
        "from softmask.serve.embedded import check_embedded_model, embedded_repository\n"
        f"settings = RunSettings(export_dir={str(export)!r})\n"
        "check_embedded_model(settings)\n"
        f"embedded_repository({str(tmp_path / 'embedded')!r}, settings)\n"
        f"write_repository({str(export)!r}, {str(tmp_path / 'bls')!r}, graphs='python')\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    result = _python(code, env=_here_env())
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stdout
    assert (tmp_path / "bls" / "softmask_features" / "1" / "model.onnx").is_file()
