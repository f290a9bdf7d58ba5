"""torch -> ONNX export (custom node + function body) and the streaming per-frame graphs."""

from softmask.export.onnx_export import export_onnx
from softmask.export.streaming import StreamingExport, export_streaming, load_streaming_export

__all__ = ["StreamingExport", "export_onnx", "export_streaming", "load_streaming_export"]
