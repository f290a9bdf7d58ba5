"""Shared pytest setup: GPU / TensorRT tests skip with a reason where those are absent, and the
tiny model's exports are made once per session."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from softmask.export.manifest import StreamingExport, load_streaming_export
from softmask.export.streaming import export_streaming
from softmask.model import HodorModel, build_model, save_checkpoint


def _tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is visible to torch on this machine")
    no_trt = pytest.mark.skip(reason="needs the TensorRT runtime; `import tensorrt` is unavailable")
    has_gpu = torch.cuda.is_available()
    has_trt = _tensorrt_available()
    for item in items:
        # Markers, not keywords: a parametrize id such as "tensorrt" is a keyword too.
        if item.get_closest_marker("gpu") is not None and not has_gpu:
            item.add_marker(no_gpu)
        if item.get_closest_marker("tensorrt") is not None and not has_trt:
            item.add_marker(no_trt)


def _tiny_model() -> HodorModel:
    """The "tiny" HODOR model with seed-0 random weights, in eval mode: the weights of the
    ``model``, ``checkpoint`` and ``shared_export`` fixtures alike."""
    torch.manual_seed(0)
    return build_model("tiny").eval()


@pytest.fixture(scope="session", autouse=True)
def softmask_cache(tmp_path_factory):
    """softmask's caches (exports, engines) in one folder for the whole test session, never the
    user's ~/.cache; exports made by one test are cache hits for the next."""
    root = tmp_path_factory.mktemp("softmask-cache")
    previous = os.environ.get("SOFTMASK_CACHE")
    os.environ["SOFTMASK_CACHE"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("SOFTMASK_CACHE", None)
    else:
        os.environ["SOFTMASK_CACHE"] = previous


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The "tiny" model with seeded random weights, saved as a checkpoint file (one per module)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(_tiny_model(), path)
    return path


@pytest.fixture(scope="module")
def model():
    """The "tiny" HODOR model with seeded random weights, in eval mode (one per test module)."""
    return _tiny_model()


_EXPORT_DEFAULTS = {name: p.default for name, p in inspect.signature(export_streaming).parameters.items()
                    if p.default is not inspect.Parameter.empty}


def _digest(folder: Path) -> str:
    """sha256 (hex) of every file's path (relative to ``folder``) and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def shared_export(tmp_path_factory) -> Iterator[Callable[..., StreamingExport]]:
    """``shared_export(height, width, num_objects, temporal_window, **options)``: the streaming
    export of the tiny model with the ``model`` and ``checkpoint`` fixtures' weights, made once per
    distinct arguments in the session (``options``: ``export_streaming``'s keywords, e.g.
    ``min_dim=48``, ``fp16=True``) and loaded afresh for each call.

    An export takes seconds on a small CPU, and many test modules need the same one. Shared, it
    must not change: the digest of its files is checked when the session ends, and a test that
    changes an export copies it first. (Not made read-only: copies of it, such as a serve
    repository's, would keep that mode and behave otherwise than a user's.) Tests of exporting
    itself call ``export_streaming``."""
    root = tmp_path_factory.mktemp("shared-exports")
    made: dict[tuple, tuple[Path, str]] = {}
    model: list[HodorModel] = []  # built on first use

    def export(height: int, width: int, num_objects: int, temporal_window: int,
               **options) -> StreamingExport:
        # Options left at export_streaming's defaults name the same export as options not given.
        given = {k: v for k, v in options.items() if _EXPORT_DEFAULTS.get(k, object()) != v}
        key = (height, width, num_objects, temporal_window, tuple(sorted(given.items())))
        if key not in made:
            # The caller's random state is left as it was: an export made here or found made
            # must not change what a test draws next.
            with torch.random.fork_rng(devices=[]):
                if not model:
                    model.append(_tiny_model())
                folder = root / f"export-{len(made)}"
                export_streaming(model[0], folder, height, width, num_objects, temporal_window,
                                 **options)
            made[key] = (folder, _digest(folder))
        return load_streaming_export(made[key][0])

    yield export
    changed = [str(folder) for folder, digest in made.values() if _digest(folder) != digest]
    assert not changed, f"tests changed shared exports (copy an export to change it): {changed}"
