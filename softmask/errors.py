"""The project's error hierarchy: the CLI turns each into one clear line and an exit code."""


class SoftmaskError(Exception):
    """Base of every error softmask raises on purpose."""

    exit_code = 1


class InputError(SoftmaskError, ValueError):
    """A tensor, file or argument given by the user is not what was expected.

    Subclasses ValueError so callers that validate arguments the usual Python way catch it.
    """

    exit_code = 2


class ExportError(SoftmaskError):
    """Conversion of a model to ONNX (or a later graph pass) failed."""

    exit_code = 3


class BackendUnavailable(SoftmaskError):
    """A runtime backend (CUDA, Triton, TensorRT, a plugin library) is missing on this machine."""

    exit_code = 4


class StreamLost(SoftmaskError):
    """A served stream ended before its last frame: the server reaped it (idle), restarted, or
    the connection to it was lost. The client restarts the stream with an annotated frame."""

    exit_code = 5
