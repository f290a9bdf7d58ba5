"""JIT launcher of the fused kernel for torch tensors (the custom op's CUDA path).

On a GPU it runs the compiled Triton kernels. With ``TRITON_INTERPRET=1`` set before the kernels
module is first imported (this module's first launch), the same kernels run on CPU tensors
through Triton's interpreter (the CI tests).
"""

from __future__ import annotations

import logging
import math

import torch

from softmask.errors import InputError
from softmask.kernels import heuristics
from softmask.ops.validation import check_inputs

logger = logging.getLogger(__name__)

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _interpreting() -> bool:
    """Whether the kernels were decorated in interpreter mode (TRITON_INTERPRET=1 at first import)."""
    from triton.runtime.interpreter import InterpretedFunction

    from softmask.kernels import triton_kernels

    return isinstance(triton_kernels.sma_split_kernel, InterpretedFunction)


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    # The interpreter has no SMs; a mid-size GPU keeps the split logic exercised.
    return 132


def _check_device(tensors: dict[str, torch.Tensor | None], device: torch.device) -> None:
    if device.type != "cuda" and not (device.type == "cpu" and _interpreting()):
        raise InputError(
            f"sma_forward runs on CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), "
            f"got query on {device}"
        )
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise InputError(f"{name} is on {t.device}, query on {device}: all must share a device")


def unsupported_reason(query: torch.Tensor, mask: torch.Tensor, num_heads: int) -> str | None:
    """Why the kernel cannot take these (already valid) inputs, or None when it can.

    For callers that fall back to the reference instead (float64, head dims without a kernel).
    """
    head_dim = query.shape[-1] // num_heads
    if head_dim not in heuristics.HEAD_DIMS:
        return (
            f"head dim D = E / num_heads = {head_dim} has no kernel; supported: "
            f"{heuristics.HEAD_DIMS}"
        )
    for name, t in (("query", query), ("mask", mask)):
        if t.dtype not in _KERNEL_DTYPES:
            return f"{name} dtype {t.dtype} has no kernel; supported: {_KERNEL_DTYPES}"
    return None


def sma_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Fused soft-masked attention forward (Triton), same contract as the reference.

    Args:
        query: [B, I, E] fp16/bf16/fp32; key, value: [B, S, E] same dtype; E = num_heads * D with
            D in {16, 32, 64, 128}.
        mask: [B, I, S] floating (any of the three dtypes), shared by all heads.
        alpha: [H] floating.
        key_padding_mask: optional [B, S] bool, True = padded; rows with every key padded give 0.
        num_splits: None picks the key split count from the SM count
            (``heuristics.choose_num_splits``); an int >= 1 forces it.

    Returns:
        [B, I, E] in query's dtype (fp32 accumulation inside).

    Raises:
        InputError: bad shapes/dtypes (``check_inputs``), an unsupported head dim or dtype, tensors
            on different devices, or CPU tensors without ``TRITON_INTERPRET=1``.
    """
    dims = check_inputs(query, key, value, mask, alpha, num_heads, key_padding_mask)
    reason = unsupported_reason(query, mask, num_heads)
    if reason is not None:
        raise InputError(reason)
    if num_splits is not None and (not isinstance(num_splits, int) or num_splits < 1):
        raise InputError(f"num_splits must be None or an int >= 1, got {num_splits!r}")
    device = query.device
    _check_device(
        {
            "key": key,
            "value": value,
            "mask": mask,
            "alpha": alpha,
            "key_padding_mask": key_padding_mask,
        },
        device,
    )

    tiles = heuristics.kernel_tiles(
        dims.batch, dims.heads, dims.queries, dims.keys, dims.head_dim, _num_sms(device)
    )
    splits = num_splits if num_splits is not None else tiles.num_splits
    return _launch(query, key, value, mask, alpha, key_padding_mask, dims, tiles, splits)


def _launch(query, key, value, mask, alpha, key_padding_mask, dims, tiles, splits) -> torch.Tensor:
    from softmask.kernels.triton_kernels import LOG2E, sma_merge_kernel, sma_split_kernel

    query, key, value, mask, alpha = (t.contiguous() for t in (query, key, value, mask, alpha))
    out = torch.empty_like(query)
    key_tiles = heuristics.cdiv(dims.keys, tiles.block_s)
    tiles_per_split = heuristics.cdiv(key_tiles, splits)
    rows = dims.batch * dims.heads * splits * dims.queries
    partial_acc = torch.empty(rows * dims.head_dim, dtype=torch.float32, device=query.device)
    partial_ml = torch.empty(rows * 2, dtype=torch.float32, device=query.device)
    if key_padding_mask is None:
        # Never read (has_padding = 0); any pointer of the right type will do.
        padding = torch.empty(1, dtype=torch.uint8, device=query.device)
    else:
        padding = key_padding_mask.contiguous().view(torch.uint8)
    query_tiles = heuristics.cdiv(dims.queries, tiles.block_i)
    precision = "ieee" if query.dtype == torch.float32 else "tf32"
    logger.debug("sma_forward %s tiles=%s splits=%d", dims, tiles, splits)
    sma_split_kernel[(dims.heads * query_tiles, splits, dims.batch)](
        query,
        key,
        value,
        mask,
        alpha,
        padding,
        partial_acc,
        partial_ml,
        dims.queries,
        dims.keys,
        dims.heads,
        splits,
        tiles_per_split,
        int(key_padding_mask is not None),
        HEAD_DIM=dims.head_dim,
        BLOCK_I=tiles.block_i,
        BLOCK_S=tiles.block_s,
        QK_SCALE_LOG2=LOG2E / math.sqrt(dims.head_dim),
        DOT_PRECISION=precision,
        num_warps=tiles.num_warps,
    )
    sma_merge_kernel[(dims.heads * query_tiles, dims.batch)](
        partial_acc,
        partial_ml,
        out,
        dims.queries,
        dims.heads,
        splits,
        HEAD_DIM=dims.head_dim,
        BLOCK_I=tiles.block_i,
        num_warps=tiles.num_warps,
    )
    return out
