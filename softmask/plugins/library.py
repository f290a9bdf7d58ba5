"""Find the TensorRT plugin libraries and register the plugin with TensorRT.

CMake builds two variants of the SoftMaskedAttention plugin (see docs/deploy-tensorrt.md); load
exactly one of them into a process:

- ``libsoftmask_trt_plugin.so`` exports only ``getCreators`` and ``setLoggerFinder`` and is
  loaded with ``IPluginRegistry::loadLibrary`` (``load_into_tensorrt``, ``trtexec
  --dynamicPlugins``);
- ``libsoftmask_trt_plugin_autoregister.so`` registers itself when ``dlopen``-ed, for hosts
  that do nothing else (ONNX Runtime's ``trt_extra_plugin_lib_paths``, Triton's TensorRT backend,
  Polygraphy ``--plugins``).

The creator is ``SoftMaskedAttention``, version "1", namespace "" (the ONNX node's op_type and
attributes).
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
AUTOREGISTER_LIBRARY_NAME = "libsoftmask_trt_plugin_autoregister.so"
ENV_VAR = "SOFTMASK_PLUGIN_LIB"
AUTOREGISTER_ENV_VAR = "SOFTMASK_PLUGIN_AUTOREGISTER_LIB"
PLUGIN_NAME = "SoftMaskedAttention"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parents[1]


def _build_instructions(library_name: str, env_var: str) -> str:
    return (
        "Build it from the repository root with:\n"
        "  cmake -S . -B build -DTensorRT_ROOT=<TensorRT install>   # folder holding include/NvInferRuntime.h\n"
        "  cmake --build build -j\n"
        f"which writes build/lib/{library_name}; or set {env_var} to the library's path. "
        "See docs/deploy-tensorrt.md."
    )


def candidate_paths(library_name: str = LIBRARY_NAME) -> list[Path]:
    """Where the library ``library_name`` is looked for when its variable is unset, in order.

    The CMake build tree of a source checkout first (``build/lib``, the folder the top-level
    CMakeLists.txt writes the libraries to), then a copy installed inside the package.
    """
    return [
        _REPO_ROOT / "build" / "lib" / library_name,
        _REPO_ROOT / "build" / "plugins" / "softMaskedAttentionPlugin" / library_name,
        _PACKAGE_DIR / "lib" / library_name,
    ]


def _find_library(library_name: str, env_var: str) -> Path:
    instructions = _build_instructions(library_name, env_var)
    configured = os.environ.get(env_var)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise BackendUnavailable(
                f"{env_var}={configured!r} does not name an existing file; point it at "
                f"{library_name} or unset it to search the build tree. {instructions}"
            )
        return path.resolve()
    searched = candidate_paths(library_name)
    for path in searched:
        if path.is_file():
            logger.debug("TensorRT plugin library: %s", path)
            return path
    listing = "\n".join(f"  {p}" for p in searched)
    raise BackendUnavailable(
        f"the TensorRT plugin library {library_name} was not found ({env_var} is unset); "
        f"searched:\n{listing}\n{instructions}"
    )


def library_path() -> Path:
    """Absolute path of ``libsoftmask_trt_plugin.so`` (for ``IPluginRegistry::loadLibrary``).

    ``SOFTMASK_PLUGIN_LIB`` wins when set (it must name an existing file); otherwise the first
    existing path of ``candidate_paths()``.

    Raises:
        BackendUnavailable: the variable names a missing file, or no candidate exists; the message
            lists what was searched and how to build the library.
    """
    return _find_library(LIBRARY_NAME, ENV_VAR)


def autoregister_library_path() -> Path:
    """Absolute path of ``libsoftmask_trt_plugin_autoregister.so`` (for hosts that only dlopen).

    Pass it to ONNX Runtime's ``trt_extra_plugin_lib_paths``, Triton's
    ``--backend-config=tensorrt,plugins=...`` or Polygraphy ``--plugins``. Looked up like
    ``library_path``, with ``SOFTMASK_PLUGIN_AUTOREGISTER_LIB`` as the variable.

    Raises:
        BackendUnavailable: as for ``library_path``.
    """
    return _find_library(AUTOREGISTER_LIBRARY_NAME, AUTOREGISTER_ENV_VAR)


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
