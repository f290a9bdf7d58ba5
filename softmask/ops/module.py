"""``SoftMaskedAttention``: HODOR's attention module around the op (projections + per-head alpha)."""

from __future__ import annotations

import torch
from torch import nn

from softmask.errors import InputError
from softmask.ops.custom_op import soft_masked_attention


def default_scaling_factors(num_heads: int) -> list[float]:
    """Initial alpha per head: head h of H gets 32 / 2**floor(4h / H).

    The heads fall into four groups (as equal as possible) with scales 32, 16, 8 and 4, which
    reproduces HODOR's 8-head default [32, 32, 16, 16, 8, 8, 4, 4] exactly; fewer than four heads
    take every ceil(4 / H)-th scale (H=2: [32, 8]; H=1: [32]).
    """
    if num_heads < 1:
        raise InputError(f"num_heads must be >= 1, got {num_heads}")
    return [32.0 / 2 ** ((4 * h) // num_heads) for h in range(num_heads)]


class SoftMaskedAttention(nn.Module):
    """Multi-head soft-masked attention with HODOR's parameter names.

    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (Linear E->E) and
    ``scaling_factors`` [H] (alpha), so HODOR checkpoints load unchanged.

    forward(query [B, I, E], key [B, S, E], value [B, S, E], mask [B, I, S],
            key_padding_mask [B, S] bool or None) -> [B, I, E]
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        learnable_scaling_factors: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise InputError(
                f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)
        factors = torch.tensor(default_scaling_factors(num_heads), dtype=torch.float32)
        if learnable_scaling_factors:
            self.scaling_factors = nn.Parameter(factors)
        else:
            self.register_buffer("scaling_factors", factors)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = self.q_proj(query)
        k = self.k_proj(key)
        v = self.v_proj(value)
        alpha = self.scaling_factors.to(q.dtype)
        out = soft_masked_attention(q, k, v, mask, alpha, self.num_heads, key_padding_mask)
        return self.out_proj(self.dropout(out))
