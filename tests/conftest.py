"""Shared pytest setup: GPU / TensorRT tests skip with a reason where those are absent."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from softmask.model import build_model, save_checkpoint


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
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(build_model("tiny"), path)
    return path


@pytest.fixture(scope="module")
def model():
    """The "tiny" HODOR model with seeded random weights, in eval mode (one per test module)."""
    torch.manual_seed(0)
    return build_model("tiny").eval()
