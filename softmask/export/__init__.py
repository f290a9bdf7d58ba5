"""torch -> ONNX export (custom node + function body) and the streaming per-frame graphs.

Imported on first use: ``StreamingExport`` and ``load_streaming_export`` (reading an export,
``softmask.export.manifest``) work without PyTorch; exporting needs it.
"""

from softmask.optional import lazy_attributes

_SOURCES = {
    "export_onnx": "softmask.export.onnx_export",
    "StreamingExport": "softmask.export.manifest",
    "load_streaming_export": "softmask.export.manifest",
    "export_streaming": "softmask.export.streaming",
}
__getattr__, __dir__ = lazy_attributes(__name__, _SOURCES)
