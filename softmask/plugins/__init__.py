"""The TensorRT plugin libraries: where they are (``library_path``, ``autoregister_library_path``),
what they hash to (``library_digests``) and registering the plugin (``load_into_tensorrt``)."""

from softmask.plugins.library import (
    AUTOREGISTER_ENV_VAR,
    AUTOREGISTER_LIBRARY_NAME,
    ENV_VAR,
    KERNEL_LIBRARY_NAME,
    LIBRARY_NAME,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    autoregister_library_path,
    candidate_paths,
    find_creator,
    library_digests,
    library_path,
    load_into_tensorrt,
    loaded_plugin_library,
)

__all__ = [
    "AUTOREGISTER_ENV_VAR",
    "AUTOREGISTER_LIBRARY_NAME",
    "ENV_VAR",
    "KERNEL_LIBRARY_NAME",
    "LIBRARY_NAME",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "autoregister_library_path",
    "candidate_paths",
    "find_creator",
    "library_digests",
    "library_path",
    "load_into_tensorrt",
    "loaded_plugin_library",
]
