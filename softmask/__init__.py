"""softmask: deploy soft-masked attention models (HODOR first) to ONNX Runtime and TensorRT."""

from softmask.errors import BackendUnavailable, ExportError, InputError, SoftmaskError

__version__ = "0.1.0"

__all__ = ["BackendUnavailable", "ExportError", "InputError", "SoftmaskError", "__version__"]
