"""torch -> ONNX export (custom node + function body) and graph passes for deployment."""

from softmask.export.onnx_export import export_onnx

__all__ = ["export_onnx"]
