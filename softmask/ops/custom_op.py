"""``softmask::soft_masked_attention``: the op as a torch.library custom op.

One registration point: schema, CPU kernel, fake (meta) kernel for torch.export / ONNX export,
autograd, and the CUDA kernel (the fused Triton kernel, when importable). The math itself lives in
``softmask.ops.reference``.
"""

from __future__ import annotations

import functools
import logging

import torch

from softmask.ops import reference
from softmask.ops.validation import check_inputs

OP_NAME = "softmask::soft_masked_attention"

logger = logging.getLogger(__name__)


@torch.library.custom_op(OP_NAME, mutates_args=())
def soft_masked_attention_op(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    hard: bool = False,
) -> torch.Tensor:
    """Default (CPU and any device without a dedicated kernel): the reference math. In hard
    mode the mask is bool (the public ``soft_masked_attention`` applies the threshold)."""
    return reference.soft_masked_attention(
        query, key, value, mask, alpha, num_heads, key_padding_mask, hard
    )


@soft_masked_attention_op.register_fake
def _fake(query, key, value, mask, alpha, num_heads, key_padding_mask=None, hard=False):
    return torch.empty_like(query)


@functools.cache
def _warn_no_kernel(reason: str) -> None:
    logger.warning("fused kernel unavailable (%s); using the reference math on the GPU", reason)


@soft_masked_attention_op.register_kernel("cuda")
def _cuda(query, key, value, mask, alpha, num_heads, key_padding_mask=None, hard=False):
    """CUDA forward: the fused Triton kernel (soft and hard mode); the reference math (on the
    GPU) without Triton or for inputs the kernel does not take."""
    try:
        from softmask.kernels import sma_forward, unsupported_reason  # triton: gpu/dev extra
    except ImportError as exc:
        _warn_no_kernel(str(exc))
        return reference.soft_masked_attention(
            query, key, value, mask, alpha, num_heads, key_padding_mask, hard
        )
    if unsupported_reason(query, mask, num_heads) is not None:
        # float64 (gradcheck) or a head dim without a kernel: the reference math on the GPU.
        return reference.soft_masked_attention(
            query, key, value, mask, alpha, num_heads, key_padding_mask, hard
        )
    return sma_forward(query, key, value, mask, alpha, num_heads, key_padding_mask, hard=hard)


def _setup_context(ctx, inputs, output) -> None:
    query, key, value, mask, alpha, num_heads, key_padding_mask, hard = inputs
    ctx.num_heads, ctx.hard = num_heads, hard
    ctx.has_padding = key_padding_mask is not None
    saved = (query, key, value, mask, alpha)
    ctx.save_for_backward(*saved, *((key_padding_mask,) if ctx.has_padding else ()))


def _backward(ctx, grad_out):
    query, key, value, mask, alpha, *rest = ctx.saved_tensors
    key_padding_mask = rest[0] if ctx.has_padding else None
    grads = reference.soft_masked_attention_backward(
        grad_out, query, key, value, mask, alpha, ctx.num_heads, key_padding_mask, ctx.hard
    )
    return (*grads, None, None, None)


soft_masked_attention_op.register_autograd(_backward, setup_context=_setup_context)


def soft_masked_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    hard: bool = False,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Soft-masked attention through the custom op (exports to ONNX as one node).

    Same signature, shapes and semantics as ``softmask.ops.reference.soft_masked_attention``:
    query [B, I, E], key/value [B, S, E], mask [B, I, S], alpha [H], key_padding_mask [B, S] bool
    (True = padded) -> [B, I, E]; ``hard`` for Mask2Former's masked attention (bool mask, or
    ``mask >= threshold``). Inputs are validated before dispatch, so a bad call raises a
    ValueError naming the tensor instead of failing inside a kernel.
    """
    check_inputs(query, key, value, mask, alpha, num_heads, key_padding_mask, hard)
    if hard:
        # The comparison exports as a standard op before the node, so the node (and the
        # plugin's kernel) only ever read a bool mask, 1 byte per key.
        mask = reference.hard_mask(mask, threshold)
    return soft_masked_attention_op(
        query, key, value, mask, alpha, num_heads, key_padding_mask, hard
    )
