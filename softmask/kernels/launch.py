"""JIT launcher of the fused kernel for torch tensors (the custom op's CUDA path).

On a GPU it runs the Triton-compiled kernel. With ``TRITON_INTERPRET=1`` set before the kernels
module is first imported (this module's first launch), the same kernel runs on CPU tensors
through Triton's interpreter (the CI tests).

One launch per call (the merge of key splits is fused into the kernel); before it, when the call
is split, a zeroed int32 counter buffer and an fp32 partials buffer come from torch's caching
allocator.
"""

from __future__ import annotations

import functools
import logging
import math

import torch

from softmask.errors import InputError
from softmask.kernels import heuristics
from softmask.ops.validation import SmaDims, check_inputs

logger = logging.getLogger(__name__)

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# The interpreter has no SMs or arch; a mid-size Hopper keeps the split and stage logic exercised.
_INTERPRETER_SMS, _INTERPRETER_ARCH = 132, 90


def _interpreting() -> bool:
    """Whether the kernels were decorated in interpreter mode (TRITON_INTERPRET=1 at first import)."""
    from triton.runtime.interpreter import InterpretedFunction

    from softmask.kernels import triton_kernels

    return isinstance(triton_kernels.sma_split_kernel, InterpretedFunction)


@functools.cache
def _device_facts(device: torch.device) -> tuple[int, int]:
    """(SM count, compute capability x10) of a device."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return props.multi_processor_count, props.major * 10 + props.minor
    return _INTERPRETER_SMS, _INTERPRETER_ARCH


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
    A bool mask (hard mode) is always supported.
    """
    head_dim = query.shape[-1] // num_heads
    if head_dim not in heuristics.HEAD_DIMS:
        return (
            f"head dim D = E / num_heads = {head_dim} has no kernel; supported: "
            f"{heuristics.HEAD_DIMS}"
        )
    for name, t in (("query", query), ("mask", mask)):
        if t.dtype not in _KERNEL_DTYPES and not (name == "mask" and t.dtype == torch.bool):
            return f"{name} dtype {t.dtype} has no kernel; supported: {_KERNEL_DTYPES}"
    return None


@functools.lru_cache(maxsize=4096)
def _check_tiles(tiles: heuristics.KernelTiles, head_dim: int) -> None:
    """Forced tiles must be launchable: powers of two (Triton's block shapes), tensor-core
    minimums of 16 rows and keys, 1 to 16 warps, 1 to 6 stages, 1 to MAX_SPLITS splits."""

    def power_of_two(n: int) -> bool:
        return n > 0 and n & (n - 1) == 0

    ok = (
        power_of_two(tiles.block_i)
        and 16 <= tiles.block_i <= 128
        and power_of_two(tiles.block_s)
        and 16 <= tiles.block_s <= 512
        and power_of_two(tiles.num_warps)
        and tiles.num_warps <= 16
        and 1 <= tiles.num_stages <= 6
        and 1 <= tiles.num_splits <= heuristics.MAX_SPLITS
    )
    if not ok:
        raise InputError(
            f"tiles {tiles} (head dim {head_dim}): block_i must be a power of two in [16, 128], "
            "block_s one in [16, 512], num_warps one <= 16, num_stages in [1, 6], num_splits in "
            f"[1, {heuristics.MAX_SPLITS}]"
        )


def _tiles(dims: SmaDims, num_sms: int, arch: int, elem: int, mask_elem: int):
    return heuristics.kernel_tiles(
        dims.batch,
        dims.heads,
        dims.queries,
        dims.keys,
        dims.head_dim,
        num_sms,
        arch,
        elem,
        mask_elem,
    )


def sma_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    num_splits: int | None = None,
    hard: bool = False,
    tiles: heuristics.KernelTiles | None = None,
) -> torch.Tensor:
    """Fused soft-masked attention forward (Triton), same contract as the reference.

    Args:
        query: [B, I, E] fp16/bf16/fp32; key, value: [B, S, E] same dtype; E = num_heads * D with
            D in {16, 32, 64, 128}.
        mask: [B, I, S] floating (any of the three dtypes), shared by all heads; bool (True =
            attend) in hard mode.
        alpha: [H] floating; not read in hard mode.
        key_padding_mask: optional [B, S] bool, True = padded; rows with every key padded give 0.
        num_splits: None picks the key split count (``heuristics.choose_num_splits``); an
            int >= 1 forces it (splits beyond the key tiles are empty and still merged).
        hard: Mask2Former's masked attention (``reference.attention_probs``): blocked keys get
            -inf, a row with no allowed unpadded key attends to every unpadded key. The mask must
            be bool here (``reference.hard_mask`` applies a threshold); the kernel reads 1 byte
            per key.
        tiles: None (the default) takes tiles, warps, stages and splits from
            ``heuristics.kernel_tiles``; a ``KernelTiles`` forces them all (configuration sweeps:
            ``benchmarks/sweep_gpu.py``). ``num_splits``, when given, still wins for the splits.

    Returns:
        [B, I, E] in query's dtype (fp32 accumulation inside).

    Raises:
        InputError: bad shapes/dtypes (``check_inputs``), an unsupported head dim or dtype, tensors
            on different devices, CPU tensors without ``TRITON_INTERPRET=1``, or sizes whose
            per-batch offsets overflow 32 bits (S * E or I * S >= 2**31).
    """
    dims = check_inputs(query, key, value, mask, alpha, num_heads, key_padding_mask, hard)
    if hard and mask.dtype != torch.bool:
        raise InputError(
            f"hard mode: mask must be bool (True = attend), got dtype {mask.dtype}; threshold a "
            "floating mask first (softmask.ops.reference.hard_mask)"
        )
    reason = unsupported_reason(query, mask, num_heads)
    if reason is not None:
        raise InputError(reason)
    if num_splits is not None and (not isinstance(num_splits, int) or num_splits < 1):
        raise InputError(f"num_splits must be None or an int >= 1, got {num_splits!r}")
    if num_splits is not None and num_splits > heuristics.MAX_SPLITS:
        raise InputError(f"num_splits must be <= {heuristics.MAX_SPLITS}, got {num_splits}")
    if dims.keys * dims.embed_dim >= 2**31 or dims.queries * dims.keys >= 2**31:
        raise InputError(
            f"S * E = {dims.keys * dims.embed_dim} and I * S = {dims.queries * dims.keys} must "
            "stay below 2**31 (the kernel's per-batch offsets are 32-bit)"
        )
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
    if dims.batch == 0 or dims.queries == 0:
        return torch.empty_like(query)
    if dims.keys == 0:
        return torch.zeros_like(query)  # every key missing: the contract's zeros
    if tiles is None:
        num_sms, arch = _device_facts(device)
        tiles = _tiles(dims, num_sms, arch, query.element_size(), mask.element_size())
    else:
        _check_tiles(tiles, dims.head_dim)
    splits = num_splits if num_splits is not None else tiles.num_splits
    return _launch(query, key, value, mask, alpha, key_padding_mask, dims, tiles, splits, hard)


def _launch(
    query, key, value, mask, alpha, key_padding_mask, dims, tiles, splits, hard
) -> torch.Tensor:
    from softmask.kernels.triton_kernels import LOG2E, MAX_MERGE_GROUPS, sma_split_kernel

    query, key, value, mask, alpha = (t.contiguous() for t in (query, key, value, mask, alpha))
    if hard:
        mask = mask.view(torch.uint8)  # the kernel reads bytes, as the AOT kernels' *u8
    out = torch.empty_like(query)
    query_tiles = heuristics.cdiv(dims.queries, tiles.block_i)
    device = query.device
    if splits > 1:
        rows = dims.batch * dims.heads * splits * dims.queries
        partial_acc = torch.empty(rows * dims.head_dim, dtype=torch.float32, device=device)
        partial_ml = torch.empty(rows * 2, dtype=torch.float32, device=device)
        counters = torch.zeros(
            dims.batch * dims.heads * query_tiles * (int(MAX_MERGE_GROUPS) + 1),
            dtype=torch.int32,
            device=device,
        )
    else:
        # Never touched by an unsplit launch; any pointers of the right types will do.
        partial_acc = partial_ml = out.new_empty(1, dtype=torch.float32)
        counters = out.new_empty(1, dtype=torch.int32)
    if key_padding_mask is None:
        padding = out.new_empty(1, dtype=torch.uint8)  # never read (PADDING=False)
    else:
        padding = key_padding_mask.contiguous().view(torch.uint8)
    precision = heuristics.dot_precision(query.element_size(), _device_facts(device)[1])
    logger.debug("sma_forward %s tiles=%s splits=%d hard=%s", dims, tiles, splits, hard)
    sma_split_kernel[(dims.heads * query_tiles, splits, dims.batch)](
        query,
        key,
        value,
        mask,
        alpha,
        padding,
        out,
        partial_acc,
        partial_ml,
        counters,
        dims.queries,
        dims.keys,
        dims.heads,
        splits,
        int(key_padding_mask is not None),
        HEAD_DIM=dims.head_dim,
        BLOCK_I=tiles.block_i,
        BLOCK_S=tiles.block_s,
        QK_SCALE_LOG2=LOG2E / math.sqrt(dims.head_dim),
        DOT_PRECISION=precision,
        PADDING=key_padding_mask is not None,
        DOT_IN_FP32=query.dtype == torch.bfloat16 and _interpreting(),
        HARD=hard,
        num_warps=tiles.num_warps,
        num_stages=tiles.num_stages,
    )
    return out
