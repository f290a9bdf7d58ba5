"""The TensorRT plugin libraries: where they are (``library_path``, ``autoregister_library_path``)
and registering the plugin (``load_into_tensorrt``)."""

from softmask.plugins.library import (
    AUTOREGISTER_ENV_VAR,
    AUTOREGISTER_LIBRARY_NAME,
    ENV_VAR,
    LIBRARY_NAME,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    autoregister_library_path,
    candidate_paths,
    library_path,
    load_into_tensorrt,
)

__all__ = [
    "AUTOREGISTER_ENV_VAR",
    "AUTOREGISTER_LIBRARY_NAME",
    "ENV_VAR",
    "LIBRARY_NAME",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "autoregister_library_path",
    "candidate_paths",
    "library_path",
    "load_into_tensorrt",
]
