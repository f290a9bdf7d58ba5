"""The soft-masked attention op: reference math, custom op with autograd, HODOR's module.

Contract: ``docs/reference/soft_masked_attention.md``; user docs: ``docs/ops.md``.
"""

from softmask.ops.custom_op import soft_masked_attention
from softmask.ops.module import SoftMaskedAttention, default_scaling_factors
from softmask.ops.validation import SmaDims, check_inputs

__all__ = [
    "SmaDims",
    "SoftMaskedAttention",
    "check_inputs",
    "default_scaling_factors",
    "soft_masked_attention",
]
