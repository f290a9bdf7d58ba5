"""Deformable convolution (v1, torchvision's ``DeformConv2d`` semantics) via ``grid_sample``.

ONNX has ``DeformConv`` only from opset 19 and TensorRT support varies; ``GridSample`` (opset 16)
plus a matrix product exports everywhere. Semantics (torchvision.ops.deform_conv2d, one offset
group, no modulation mask): for output pixel (y, x) and kernel tap k = (i, j) (row-major),

    p = (y*stride - pad + i*dilation + offset[2k], x*stride - pad + j*dilation + offset[2k+1])
    out[:, y, x] = bias + sum_k W[:, :, i, j] @ bilinear(input, p)

with offsets in pixels, ``[dy, dx]`` per tap, and the input treated as zero outside its bounds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def deform_conv2d(
    x: torch.Tensor,
    offsets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: int = 1,
    stride: int = 1,
    dilation: int = 1,
) -> torch.Tensor:
    """Deformable convolution.

    Args:
        x: [B, Cin, H, W].
        offsets: [B, 2*kh*kw, Ho, Wo], pixels, ``[dy, dx]`` per tap in row-major tap order.
        weight: [Cout, Cin, kh, kw]; bias: [Cout] or None.
    Returns:
        [B, Cout, Ho, Wo].
    """
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offsets.shape[-2:]
    taps = kh * kw
    dtype = x.dtype
    base_y = torch.arange(ho, device=x.device, dtype=dtype) * stride - padding
    base_x = torch.arange(wo, device=x.device, dtype=dtype) * stride - padding
    tap_y = (torch.arange(kh, device=x.device, dtype=dtype) * dilation).repeat_interleave(kw)
    tap_x = (torch.arange(kw, device=x.device, dtype=dtype) * dilation).repeat(kh)
    off = offsets.view(b, taps, 2, ho, wo)
    pos_y = base_y.view(1, 1, ho, 1) + tap_y.view(1, taps, 1, 1) + off[:, :, 0]  # [B, K, Ho, Wo]
    pos_x = base_x.view(1, 1, 1, wo) + tap_x.view(1, taps, 1, 1) + off[:, :, 1]
    # Pixel centres -> grid_sample's normalised coordinates (align_corners=False convention).
    grid = torch.stack(((2 * pos_x + 1) / w - 1, (2 * pos_y + 1) / h - 1), dim=-1)
    sampled = F.grid_sample(
        x,
        grid.view(b, taps * ho, wo, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [B, Cin, K*Ho, Wo]
    columns = sampled.view(b, cin * taps, ho * wo)  # channel-major, then tap: matches weight layout
    out = torch.matmul(weight.reshape(cout, cin * taps), columns).view(b, cout, ho, wo)
    if bias is not None:
        out = out + bias.view(1, cout, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """Parameters ``weight`` [Cout, Cin, k, k] and ``bias`` [Cout], as torchvision's module."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(cin * kernel * kernel)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, offsets, self.weight, self.bias, padding=self.padding)


class DeformConvBlock(nn.Module):
    """Offsets from a 3x3 conv of the input, then a 3x3 deformable conv (HODOR's names)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_offsets = nn.Conv2d(dim, 18, 3, padding=1)
        self.conv_deform = DeformConv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_deform(x, self.conv_offsets(x))
