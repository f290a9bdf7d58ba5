"""The TensorRT plugin library: where it is (``library_path``) and registering it (``load_into_tensorrt``)."""

from softmask.plugins.library import (
    ENV_VAR,
    LIBRARY_NAME,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    candidate_paths,
    library_path,
    load_into_tensorrt,
)

__all__ = [
    "ENV_VAR",
    "LIBRARY_NAME",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "candidate_paths",
    "library_path",
    "load_into_tensorrt",
]
