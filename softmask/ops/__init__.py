"""The soft-masked attention op: reference math, custom op with autograd, HODOR's module.

Contract: ``docs/reference/soft_masked_attention.md``; user docs: ``docs/ops.md``. The names below
are imported on first use (they need PyTorch); ``softmask.ops.onnx_op``, the ONNX node and its
function body, works without it (the TensorRT build strips function bodies with it).
"""

from softmask.optional import lazy_attributes

_SOURCES = {
    "soft_masked_attention": "softmask.ops.custom_op",
    "SoftMaskedAttention": "softmask.ops.module",
    "default_scaling_factors": "softmask.ops.module",
    "SmaDims": "softmask.ops.validation",
    "check_inputs": "softmask.ops.validation",
}
__getattr__, __dir__ = lazy_attributes(__name__, _SOURCES)
