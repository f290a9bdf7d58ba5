"""Swin-T backbone (Liu et al. 2021) with the parameter names of HODOR's checkpoints.

Layout as in HODOR's ``feature_extractor.bb_fpn.0``: ``patch_embed.{proj,norm}``,
``layers.L.blocks.N.{norm1, attn.{relative_position_bias_table, relative_position_index, qkv, proj},
norm2, mlp.{fc1, fc2}}``, ``layers.L.downsample.{reduction, norm}`` and per-stage output norms
``norm0..norm3``. Inference semantics only matter here (stochastic depth is training-only and the
backbone is used with it off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Logit added between tokens of different regions of a shifted window (as in the original Swin).
_SHIFT_MASK_LOGIT = -100.0


def relative_position_index(window: int) -> torch.Tensor:
    """[window^2, window^2] index into the (2w-1)^2 relative-position bias table."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)  # [2, w*w]
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # [2, w*w, w*w], each in [0, 2w-2]
    return rel[0] * (2 * window - 1) + rel[1]


def to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] (H, W multiples of window) -> [B * nWindows, window*window, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def from_windows(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``to_windows``: -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """[nWindows, window^2, window^2] additive mask (0 / -100) for shifted-window attention.

    After the cyclic shift, tokens from up to 3x3 different image regions share a window; tokens of
    different regions must not attend to each other.
    """
    region = torch.zeros(1, h, w, 1)
    bounds_h = (0, h - window, h - shift, h)
    bounds_w = (0, w - window, w - shift, w)
    label = 0
    for i in range(3):
        for j in range(3):
            region[:, bounds_h[i] : bounds_h[i + 1], bounds_w[j] : bounds_w[j + 1], :] = label
            label += 1
    ids = to_windows(region, window).squeeze(-1)  # [nW, w*w]
    different = ids[:, None, :] != ids[:, :, None]
    return torch.zeros(different.shape).masked_fill(different, _SHIFT_MASK_LOGIT)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B*nW, N, C]; mask: [nW, N, N] additive or None -> [B*nW, N, C]."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B*nW, heads, N, d]
        logits = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        logits = logits + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            logits = logits.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            logits = logits.view(bw, self.num_heads, n, n)
        out = logits.softmax(dim=-1) @ v  # [B*nW, heads, N, d]
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention block + MLP, on tokens [B, H*W, C]."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor | None) -> torch.Tensor:
        b, _, c = x.shape
        ws = self.window
        y = self.norm1(x).view(b, h, w, c)
        # Zero padding to whole windows happens after the norm and is not masked out (as in Swin).
        pad_b, pad_r = (-h) % ws, (-w) % ws
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift > 0:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = from_windows(self.attn(to_windows(y, ws), mask if self.shift > 0 else None), ws, hp, wp)
        if self.shift > 0:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 token merge: [B, H*W, C] -> [B, ceil(H/2)*ceil(W/2), 2C]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        # Channel order (even row, even col), (odd, even), (even, odd), (odd, odd), as in Swin.
        x = torch.cat(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
        )
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """Blocks alternating plain / shifted windows, then (except the last stage) patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (this stage's tokens [B, h*w, C], merged tokens for the next stage or None)."""
        ws = self.window
        hp, wp = h + (-h) % ws, w + (-w) % ws
        mask = shifted_window_mask(hp, wp, ws, ws // 2).to(device=x.device, dtype=x.dtype)
        for block in self.blocks:
            x = block(x, h, w, mask)
        merged = self.downsample(x, h, w) if self.downsample is not None else None
        return x, merged


class PatchEmbed(nn.Module):
    """4x4 patches -> embed_dim channels, LayerNorm."""

    def __init__(self, embed_dim: int, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        x = F.pad(x, (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p))
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SwinTransformer(nn.Module):
    """Swin backbone returning the four stage outputs [B, C_i, H/2^(i+2), W/2^(i+2)], i = 0..3."""

    def __init__(
        self,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window: int = 7,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(embed_dim)
        self.num_features = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList(
            SwinStage(self.num_features[i], depths[i], num_heads[i], window, i < len(depths) - 1)
            for i in range(len(depths))
        )
        for i, width in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(width))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        b, _, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        outputs = []
        for i, stage in enumerate(self.layers):
            out, tokens = stage(tokens, h, w)
            out = getattr(self, f"norm{i}")(out)
            outputs.append(out.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous())
            h, w = (h + 1) // 2, (w + 1) // 2
        return outputs
