"""Serving on Triton Inference Server: many video streams, one state per stream on the server.

- ``repository``: writes a Triton model repository for a streaming export (``softmask serve
  repo``): the ``softmask_stream`` model (python backend, sequence batcher) and, for the
  onnxruntime / tensorrt graph variants, one model per per-frame graph called from it (BLS).
- ``streams``: the server-side table of streams (state per correlation id, limits, idle reaping),
  independent of Triton so it is testable alone.
- ``triton_model``: the python-backend model class the repository's ``model.py`` loads.
- ``server``: the embedded server (the ``tritonserver`` binary bundled with nvidia-pytriton).
- ``embedded``: what ``softmask serve start`` serves on it, those settings' checks, and its
  foreground lifecycle (start, wait, stop).
- ``client``: streams a frame source to a server over gRPC (``softmask stream``).

User docs: docs/serving.md.
"""
