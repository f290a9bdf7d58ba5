"""Find the TensorRT plugin library (libsoftmask_trt_plugin.so) and register it with TensorRT.

The library is built by CMake (see docs/deploy-tensorrt.md) and exports only ``getCreators`` and
``setLoggerFinder``: TensorRT loads it with ``IPluginRegistry::loadLibrary``. Its creator is
``SoftMaskedAttention``, version "1", namespace "" (the ONNX node's op_type and attributes).
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

from softmask.errors import BackendUnavailable

logger = logging.getLogger(__name__)

LIBRARY_NAME = "libsoftmask_trt_plugin.so"
ENV_VAR = "SOFTMASK_PLUGIN_LIB"
PLUGIN_NAME = "SoftMaskedAttention"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parents[1]

BUILD_INSTRUCTIONS = (
    "Build it from the repository root with:\n"
    "  cmake -S . -B build -DTensorRT_ROOT=<TensorRT install>   # folder holding include/NvInferRuntime.h\n"
    "  cmake --build build -j\n"
    f"which writes build/lib/{LIBRARY_NAME}; or set {ENV_VAR} to the library's path. "
    "See docs/deploy-tensorrt.md."
)


def candidate_paths() -> list[Path]:
    """Where ``library_path`` looks when ``SOFTMASK_PLUGIN_LIB`` is unset, in order.

    The CMake build tree of a source checkout first (``build/lib``, the folder the top-level
    CMakeLists.txt writes both libraries to), then a copy installed inside the package.
    """
    return [
        _REPO_ROOT / "build" / "lib" / LIBRARY_NAME,
        _REPO_ROOT / "build" / "plugins" / "softMaskedAttentionPlugin" / LIBRARY_NAME,
        _PACKAGE_DIR / "lib" / LIBRARY_NAME,
    ]


def library_path() -> Path:
    """Absolute path of the built plugin library.

    ``SOFTMASK_PLUGIN_LIB`` wins when set (it must name an existing file); otherwise the first
    existing path of ``candidate_paths()``.

    Raises:
        BackendUnavailable: the variable names a missing file, or no candidate exists; the message
            lists what was searched and how to build the library.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise BackendUnavailable(
                f"{ENV_VAR}={configured!r} does not name an existing file; point it at "
                f"{LIBRARY_NAME} or unset it to search the build tree. {BUILD_INSTRUCTIONS}"
            )
        return path.resolve()
    searched = candidate_paths()
    for path in searched:
        if path.is_file():
            logger.debug("TensorRT plugin library: %s", path)
            return path
    listing = "\n".join(f"  {p}" for p in searched)
    raise BackendUnavailable(
        f"the TensorRT plugin library {LIBRARY_NAME} was not found ({ENV_VAR} is unset); "
        f"searched:\n{listing}\n{BUILD_INSTRUCTIONS}"
    )


def _import_tensorrt() -> Any:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as error:
        raise BackendUnavailable(
            "`import tensorrt` failed: the TensorRT Python bindings are not installed "
            f"({error}). Install the TensorRT release matching the one the plugin was built "
            "against (on Jetson it comes with JetPack: python3-libnvinfer)."
        ) from error


def _find_creator(registry: Any) -> Any:
    """The registered SoftMaskedAttention creator, or None."""
    get_creator = getattr(registry, "get_creator", None)
    if get_creator is not None:
        return get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    for creator in getattr(registry, "all_creators", []):
        if (getattr(creator, "name", None), getattr(creator, "plugin_version", None)) == (
            PLUGIN_NAME,
            PLUGIN_VERSION,
        ):
            return creator
    return None


def load_into_tensorrt(registry: Any = None, path: str | os.PathLike[str] | None = None) -> Any:
    """Load the plugin library into a TensorRT plugin registry and check its creator is there.

    Args:
        registry: a ``tensorrt.IPluginRegistry``; default ``tensorrt.get_plugin_registry()``
            (the process-wide registry that builders and runtimes use).
        path: the library; default ``library_path()``.

    Returns:
        The library handle from ``registry.load_library`` (pass it to ``deregister_library``).

    Raises:
        BackendUnavailable: TensorRT is not importable, the library is missing, TensorRT refused
            to load it, or it loaded but registered no SoftMaskedAttention creator.
    """
    trt = _import_tensorrt()
    library = Path(path) if path is not None else library_path()
    if registry is None:
        registry = trt.get_plugin_registry()
    try:
        handle = registry.load_library(str(library))
    except RuntimeError as error:
        raise BackendUnavailable(f"TensorRT failed to load {library}: {error}") from error
    if handle is None:
        raise BackendUnavailable(
            f"TensorRT {getattr(trt, '__version__', '?')} could not load {library} (see TensorRT's "
            "log above). A plugin built against another TensorRT major version, or a missing "
            "libsoftmask_kernels.so / libcudart next to it, are the usual causes; rebuild against "
            "this TensorRT."
        )
    if _find_creator(registry) is None:
        raise BackendUnavailable(
            f"{library} loaded, but TensorRT's registry has no creator {PLUGIN_NAME!r} version "
            f"{PLUGIN_VERSION!r} namespace {PLUGIN_NAMESPACE!r}"
        )
    logger.info("registered TensorRT plugin %s from %s", PLUGIN_NAME, library)
    return handle
