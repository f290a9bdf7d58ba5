"""DETR-style sine position encoding (normalised, 2*pi scale), as HODOR's."""

from __future__ import annotations

import math

import torch


def sine_position_encoding(
    height: int,
    width: int,
    dim: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    temperature: float = 10000.0,
) -> torch.Tensor:
    """[dim, height, width] encoding: dim/2 features of the row (y) then dim/2 of the column (x).

    Positions are 1-based, normalised by the last position and scaled to 2*pi; each half
    interleaves sin (even features) and cos (odd features) with frequencies
    temperature^(2*(f//2)/n).
    """
    feats = dim // 2
    eps = 1e-6
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32)
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32)
    y = y / (height + eps) * (2 * math.pi)
    x = x / (width + eps) * (2 * math.pi)
    f = torch.arange(feats, device=device, dtype=torch.float32)
    freq = temperature ** (2 * torch.div(f, 2, rounding_mode="floor") / feats)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None] / freq  # [N, feats]
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, feats)
    pos_x = encode(x)[None, :, :].expand(height, width, feats)
    return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1).to(dtype)
