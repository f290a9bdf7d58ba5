"""Input checks for the soft-masked attention op, shared by every Python implementation.

The contract (``docs/reference/soft_masked_attention.md``; layout: docs/architecture.md):

    query            [B, I, E]   floating
    key, value       [B, S, E]   floating, same dtype as query
    mask             [B, I, S]   floating (values in [0, 1]; not checked, it may be learned);
                                 bool allowed in hard mode
    alpha            [H]         floating
    key_padding_mask [B, S]      bool, True = padded (optional)
    E = H * D
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softmask.errors import InputError


@dataclass(frozen=True)
class SmaDims:
    """Sizes of one call: batch, queries, keys, heads, head dim."""

    batch: int
    queries: int
    keys: int
    heads: int
    head_dim: int

    @property
    def embed_dim(self) -> int:
        return self.heads * self.head_dim


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def _expect_shape(name: str, t: torch.Tensor, expected: tuple[int, ...], spelled: str) -> None:
    if tuple(t.shape) != expected:
        want = "[" + ", ".join(str(d) for d in expected) + "]"
        raise InputError(f"{name} must have shape {spelled} = {want}, got {_shape(t)}")


def _expect_float(name: str, t: torch.Tensor) -> None:
    if not t.dtype.is_floating_point:
        raise InputError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def check_inputs(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    hard: bool = False,
) -> SmaDims:
    """Validate one call of the op and return its sizes (``hard``: the mask may be bool).

    Raises:
        InputError (a ValueError) naming the offending tensor and the shape or dtype expected.
    """
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
        raise InputError(f"num_heads must be a positive int, got {num_heads!r}")
    if query.dim() != 3:
        raise InputError(f"query must have shape [B, I, E] (3 dims), got {_shape(query)}")
    # Sizes stay as given (ints, or SymInts while torch.export traces): int() would specialise
    # dynamic dimensions.
    batch, queries, embed = query.shape
    if embed % num_heads != 0:
        raise InputError(
            f"embedding dim E={embed} of query {_shape(query)} is not divisible by "
            f"num_heads={num_heads}"
        )
    if key.dim() != 3:
        raise InputError(f"key must have shape [B, S, E] = [{batch}, S, {embed}], got {_shape(key)}")
    keys = key.shape[1]
    _expect_shape("key", key, (batch, keys, embed), "[B, S, E]")
    _expect_shape("value", value, (batch, keys, embed), "[B, S, E]")
    _expect_shape("mask", mask, (batch, queries, keys), "[B, I, S]")
    _expect_shape("alpha", alpha, (num_heads,), "[H]")
    for name, t in (("query", query), ("key", key), ("value", value), ("alpha", alpha)):
        _expect_float(name, t)
    if not (hard and mask.dtype == torch.bool):
        if mask.dtype == torch.bool:
            raise InputError("mask is bool: a bool mask needs hard mode (hard=True); the soft "
                             "mask is floating, in [0, 1]")
        _expect_float("mask", mask)
    for name, t in (("key", key), ("value", value)):
        if t.dtype != query.dtype:
            raise InputError(f"{name} must have the dtype of query ({query.dtype}), got {t.dtype}")
    if key_padding_mask is not None:
        _expect_shape("key_padding_mask", key_padding_mask, (batch, keys), "[B, S]")
        if key_padding_mask.dtype != torch.bool:
            raise InputError(
                f"key_padding_mask must be a bool tensor (True = padded), got dtype "
                f"{key_padding_mask.dtype}"
            )
    return SmaDims(batch, queries, keys, num_heads, embed // num_heads)
