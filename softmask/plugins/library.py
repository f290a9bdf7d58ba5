"""Find the TensorRT plugin libraries and register the plugin with TensorRT.

CMake builds two variants of the SoftMaskedAttention plugin (see docs/deploy-tensorrt.md); load
exactly one of them into a process:

Both have the fused kernels linked in: one file is all TensorRT, trtexec (``--dynamicPlugins``,
``--setPluginsToSerialize``) and Triton need.

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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softmask.errors import BackendUnavailable
from softmask.files import file_sha256

logger = logging.getLogger(__name__)

LIBRARY_NAME = "libsoftmask_trt_plugin.so"
AUTOREGISTER_LIBRARY_NAME = "libsoftmask_trt_plugin_autoregister.so"
KERNEL_LIBRARY_NAME = "libsoftmask_kernels.so"
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


def _mapped(names: tuple[str, ...], maps: str | os.PathLike[str]) -> Path | None:
    """The first file of this process's memory map whose name is in ``names``, or None."""
    try:
        lines = Path(maps).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and Path(fields[5]).name in names:
            return Path(fields[5])
    return None


def loaded_plugin_library(maps: str | os.PathLike[str] = "/proc/self/maps") -> Path | None:
    """The softmask plugin library (either variant) mapped into this process, or None.

    Read from the process's memory map, so it names the file that really registered the creator,
    however it was loaded (``load_into_tensorrt``, a ``dlopen``, ``LD_PRELOAD``).
    """
    return _mapped((LIBRARY_NAME, AUTOREGISTER_LIBRARY_NAME), maps)


# What the engine note records for the kernels of a plugin library that has them linked in.
KERNELS_IN_PLUGIN = "linked into the plugin library"


def library_digests(
    plugin_library: str | os.PathLike[str] | None = None,
    maps: str | os.PathLike[str] = "/proc/self/maps",
) -> dict[str, str]:
    """sha256 (hex) of the plugin library and of the kernel library its kernels come from.

    The plugin library has the kernels (cubins, PTX, launch table) linked in, so its hash changes
    with any kernel. A ``libsoftmask_kernels.so`` mapped into this process (a plugin built to load
    it, or the ctypes launcher) is hashed too: the mapped file, which is the one in use, not a
    file of that name beside the plugin. Engines record both (cache key and note), so a rebuilt
    plugin or kernel never meets an engine built with the old one.

    Args:
        plugin_library: default: the plugin library loaded in this process
            (``loaded_plugin_library``), else ``library_path()``.
        maps: the process memory map to read.

    Returns:
        ``{"plugin_library": file name, "plugin_sha256": ..., "kernels_sha256": ...}``, the last
        ``KERNELS_IN_PLUGIN`` when no kernel library is mapped.

    Raises:
        BackendUnavailable: the plugin library file is missing.
    """
    if plugin_library is not None:
        plugin = Path(plugin_library)
    else:
        plugin = loaded_plugin_library(maps) or library_path()
    if not plugin.is_file():
        raise BackendUnavailable(f"{plugin} is missing; build the plugin library first")
    kernels = _mapped((KERNEL_LIBRARY_NAME,), maps)
    return {
        "plugin_library": plugin.name,
        "plugin_sha256": file_sha256(plugin),
        "kernels_sha256": file_sha256(kernels) if kernels is not None else KERNELS_IN_PLUGIN,
    }


def _import_tensorrt() -> Any:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as error:
        raise BackendUnavailable(
            "`import tensorrt` failed: the TensorRT Python bindings are not installed "
            f"({error}). Install the TensorRT release matching the one the plugin was built "
            "against (on Jetson it comes with JetPack: python3-libnvinfer)."
        ) from error


def find_creator(registry: Any) -> Any:
    """The registered SoftMaskedAttention creator of ``registry`` (name, version and namespace
    must all match), or None.

    TensorRT's registry answers ``get_creator``, the lookup its parser and runtime use; the
    ``all_creators`` listing is only a fallback for registries without it.
    """
    get_creator = getattr(registry, "get_creator", None)
    if get_creator is not None:
        return get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    for creator in getattr(registry, "all_creators", []):
        identity = (
            getattr(creator, "name", None),
            getattr(creator, "plugin_version", None),
            getattr(creator, "plugin_namespace", PLUGIN_NAMESPACE),
        )
        if identity == (PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE):
            return creator
    return None


@dataclass
class _Loaded:
    registry: Any  # held so the registry (and its id) stays the one the handle belongs to
    path: Path
    handle: Any


_LOCK = threading.Lock()
_LOADED: dict[int, _Loaded] = {}  # id(registry) -> the library this process loaded into it


def load_into_tensorrt(registry: Any = None, path: str | os.PathLike[str] | None = None) -> Any:
    """Make sure the SoftMaskedAttention creator is registered in a TensorRT plugin registry.

    Idempotent, and safe next to other ways of registering the plugin: the creator is looked up
    first, and the library is loaded only when it is absent. TensorRT's ``loadLibrary`` refuses
    (returns null) a library any of whose creators is already registered, so loading again, or
    after the self-registering variant was ``dlopen``-ed, would otherwise fail. One handle is
    kept per registry and process.

    Args:
        registry: a ``tensorrt.IPluginRegistry``; default ``tensorrt.get_plugin_registry()``
            (the process-wide registry that builders and runtimes use).
        path: the library; default ``library_path()``. Ignored (with a log line) when the
            creator is already registered.

    Returns:
        The handle from ``registry.load_library`` of the library this process loaded (the same
        handle on every call), or None when the creator was registered by something else (the
        self-registering library, the host application).

    Raises:
        BackendUnavailable: TensorRT is not importable, the library is missing, TensorRT refused
            to load it, or it loaded but registered no SoftMaskedAttention creator.
    """
    trt = _import_tensorrt()
    if registry is None:
        registry = trt.get_plugin_registry()
    with _LOCK:
        known = _LOADED.get(id(registry))
        if find_creator(registry) is not None:
            if known is not None and known.registry is registry:
                if path is not None and Path(path).resolve() != known.path:
                    logger.info("SoftMaskedAttention is registered from %s already; not loading %s",
                                known.path, path)
                return known.handle
            logger.info("SoftMaskedAttention is registered already (not by load_into_tensorrt); "
                        "nothing loaded")
            return None
        library = (Path(path) if path is not None else library_path()).resolve()
        handle = _load_library(trt, registry, library)
        _LOADED[id(registry)] = _Loaded(registry, library, handle)
    logger.info("registered TensorRT plugin %s from %s", PLUGIN_NAME, library)
    return handle


def _load_library(trt: Any, registry: Any, library: Path) -> Any:
    try:
        handle = registry.load_library(str(library))
    except RuntimeError as error:
        raise BackendUnavailable(f"TensorRT failed to load {library}: {error}") from error
    if handle is None:
        raise BackendUnavailable(
            f"TensorRT {getattr(trt, '__version__', '?')} could not load {library} (see TensorRT's "
            "log above). A plugin built against another TensorRT major version, or a missing "
            "CUDA runtime, are the usual causes; rebuild against this TensorRT."
        )
    if find_creator(registry) is None:
        raise BackendUnavailable(
            f"{library} loaded, but TensorRT's registry has no creator {PLUGIN_NAME!r} version "
            f"{PLUGIN_VERSION!r} namespace {PLUGIN_NAMESPACE!r}"
        )
    return handle
