"""Optional heavy dependencies: package attributes imported on first use (PEP 562), so that
importing a package does not import PyTorch, and one clear error where torch is needed but absent.

A deployment install (``pip install softmask``) has no torch: it runs exports with ONNX Runtime or
TensorRT. The exporter, the torch backend and training come with ``pip install softmask[torch]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from softmask.errors import BackendUnavailable

TORCH_EXTRA = "softmask[torch]"


def require_torch(purpose: str, alternative: str = "") -> None:
    """Import PyTorch, or raise BackendUnavailable saying that ``purpose`` (e.g. "exporting a
    checkpoint") needs it, how to install it, and ``alternative`` (what works without it)."""
    try:
        importlib.import_module("torch")
    except ImportError as error:
        raise BackendUnavailable(
            f"{purpose} needs PyTorch, which this environment lacks ({error}): "
            f"pip install '{TORCH_EXTRA}'" + (f", or {alternative}" if alternative else "")
        ) from error


def lazy_attributes(
    package: str, sources: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose attribute ``name`` comes from module
    ``sources[name]`` (imported when the attribute is first read)."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(sources[name]), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*importlib.import_module(package).__dict__, *sources})

    return __getattr__, __dir__
