"""HODOR's decoder: mask logits for a new frame from the descriptors of the last T frames."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from softmask.model.config import ModelConfig
from softmask.model.deform_conv import DeformConvBlock
from softmask.model.position import sine_position_encoding

# Mask logit of an (object or background) descriptor slot with no valid time step. HODOR uses -inf
# but never has such slots; fixed-size state does (objects not yet seen). A finite value keeps
# bilinear upsampling NaN-free and fp16-representable, and still gives probability 0 after softmax.
INVALID_LOGIT = -1.0e4


class PixelQueryAttention(nn.Module):
    """Multi-head attention with pixels as queries and descriptors as keys/values.

    Only the query has a projection (``q_proj``): keys and values arrive projected (separate
    object / background projections in the layer) and there is no output projection, as in HODOR.
    Dropout acts on the attention logits before masking and softmax, as HODOR's does
    (training only).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_invalid: torch.Tensor | None,
    ) -> torch.Tensor:
        """query [B, N, C]; key, value [B, K, C]; key_invalid [B, K] bool or None -> [B, N, C]."""
        b, n, c = query.shape
        heads = self.num_heads
        d = c // heads
        q = self.q_proj(query).view(b, n, heads, d).transpose(1, 2)
        k = key.view(b, -1, heads, d).transpose(1, 2)
        v = value.view(b, -1, heads, d).transpose(1, 2)
        logits = self.dropout(torch.matmul(q / math.sqrt(d), k.transpose(-1, -2)))  # [B, h, N, K]
        if key_invalid is not None:
            logits = logits.masked_fill(key_invalid[:, None, None, :], float("-inf"))
        out = torch.matmul(logits.softmax(dim=-1), v)
        return out.transpose(1, 2).reshape(b, n, c)


class DecoderLayer(nn.Module):
    """fmap += GN(ReLU(DeformConv(fmap))); cross-attention (pixels -> descriptors) -> LN
    -> FFN -> LN."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_conv_substitute = nn.Sequential(
            DeformConvBlock(dim), nn.ReLU(), nn.GroupNorm(16, dim)
        )
        self.k_proj_fg = nn.Linear(dim, dim)
        self.k_proj_bg = nn.Linear(dim, dim)
        self.v_proj_fg = nn.Linear(dim, dim)
        self.v_proj_bg = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = PixelQueryAttention(dim, num_heads, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.dropout2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        fmap: torch.Tensor,
        pixel_pos: torch.Tensor | None,
        fg: torch.Tensor,
        fg_pos: torch.Tensor,
        bg: torch.Tensor,
        bg_pos: torch.Tensor,
        key_invalid: torch.Tensor | None,
    ) -> torch.Tensor:
        """fmap [B, C, h, w]; pixel_pos [S, C] or None; fg, fg_pos [B, I*T, C]; bg, bg_pos
        [B, Qb*T, C]; key_invalid [B, I*T + Qb*T] or None -> updated fmap [B, C, h, w]."""
        fmap = fmap + self.self_attn_conv_substitute(fmap)
        b, c, h, w = fmap.shape
        pixels = fmap.flatten(2).transpose(1, 2)  # [B, S, C]
        key = torch.cat((self.k_proj_fg(fg + fg_pos), self.k_proj_bg(bg + bg_pos)), dim=1)
        value = torch.cat((self.v_proj_fg(fg), self.v_proj_bg(bg)), dim=1)
        query = pixels if pixel_pos is None else pixels + pixel_pos[None]
        res = self.cross_attn(query, key, value, key_invalid)
        pixels = self.norm1(pixels + self.dropout1(res))
        res = self.dropout3(self.fc2(self.dropout2(F.relu(self.fc1(pixels)))))
        pixels = self.norm2(pixels + res)
        return pixels.transpose(1, 2).reshape(b, c, h, w)


def _conv_relu_gn(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """HODOR's decoder Conv2d block: conv (no bias) -> ReLU -> GroupNorm(8)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.ReLU(),
        nn.GroupNorm(8, cout),
    )


class Decoder(nn.Module):
    """Mask logits [B, 1 + Qb + I, H/4, W/4]: channels [catch-all, Qb background, I objects]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.dim
        self.config = config
        self.attn_layers = nn.ModuleList(
            DecoderLayer(dim, config.num_heads, config.decoder_ffn_dim, config.dropout)
            for _ in range(config.decoder_layers)
        )
        self.conv_4x_reduce = _conv_relu_gn(dim, config.mask_reduce_dim, 1)
        self.conv_4x = _conv_relu_gn(dim, dim, 3)
        self.instance_query_proj = nn.Linear(dim, dim)
        self.bg_query_proj = nn.Linear(dim, dim)
        # Present in HODOR's checkpoints but unused by its forward pass; kept so they load strictly.
        self.fmap_proj_4x = _conv_relu_gn(dim, dim, 1)
        self.catch_all_conv = nn.Sequential(
            nn.Conv2d(dim, config.catch_all_hidden_dim, 3, padding=1, bias=False),
            nn.GroupNorm(8, config.catch_all_hidden_dim),
            nn.ReLU(),
            nn.Conv2d(config.catch_all_hidden_dim, 1, 1, bias=False),
        )

    def forward(
        self,
        f4: torch.Tensor,
        f8: torch.Tensor,
        fg: torch.Tensor,
        bg: torch.Tensor,
        fg_pos: torch.Tensor,
        bg_pos: torch.Tensor,
        fg_valid: torch.Tensor | None = None,
        bg_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode one frame.

        Args:
            f4: [B, C, 2h, 2w] stride-4 features; f8: [B, C, h, w] stride-8 features.
            fg: [B, I, T, C] object descriptors of T time steps; bg: [B, Qb, T, C].
            fg_pos: [C] object position embedding; bg_pos: [Qb, C] (the encoder's).
            fg_valid: [B, I, T] bool, bg_valid: [B, Qb, T] bool, or None (all valid). At least one
                key per batch element must be valid.
        Returns:
            logits [B, 1 + Qb + I, 2h, 2w] (stride 4): catch-all, background cells, objects.
            Object logits are the max over the valid time steps; INVALID_LOGIT where none is valid.
        """
        b, num_obj, t, c = fg.shape
        num_bg = bg.shape[1]
        fg_keys = fg.reshape(b, num_obj * t, c)
        bg_keys = bg.reshape(b, num_bg * t, c)
        fg_pos_keys = fg_pos.to(fg.dtype).expand(b, num_obj * t, c)
        bg_pos_keys = (
            bg_pos.to(bg.dtype)[None, :, None, :].expand(b, num_bg, t, c).reshape(b, num_bg * t, c)
        )
        key_invalid = None
        if fg_valid is not None and bg_valid is not None:
            key_invalid = ~torch.cat(
                (fg_valid.reshape(b, num_obj * t), bg_valid.reshape(b, num_bg * t)), dim=1
            ).to(torch.bool)
        h, w = f8.shape[-2:]
        pixel_pos = None
        if self.config.decoder_query_pos:
            pos = sine_position_encoding(h, w, c, device=f8.device, dtype=f8.dtype)
            pixel_pos = pos.flatten(1).transpose(0, 1)
        fmap = f8
        for layer in self.attn_layers:
            fmap = layer(fmap, pixel_pos, fg_keys, fg_pos_keys, bg_keys, bg_pos_keys, key_invalid)
        fmap = F.interpolate(fmap, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        skip = self.conv_4x_reduce(f4)
        reduce = skip.shape[1]
        fmap = torch.cat((fmap[:, :reduce] + skip, fmap[:, reduce:]), dim=1)
        fmap = self.conv_4x(fmap)
        return self._mask_logits(fmap, fg, bg, fg_valid, bg_valid)

    def _mask_logits(
        self,
        fmap: torch.Tensor,
        fg: torch.Tensor,
        bg: torch.Tensor,
        fg_valid: torch.Tensor | None,
        bg_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        b, c, h4, w4 = fmap.shape
        descriptors = torch.cat(
            (self.bg_query_proj(bg), self.instance_query_proj(fg)), dim=1
        )  # [B, Q, T, C]
        logits = torch.matmul(descriptors, fmap.flatten(2)[:, None]) / math.sqrt(c)  # [B, Q, T, S]
        if fg_valid is not None and bg_valid is not None:
            valid = torch.cat((bg_valid, fg_valid), dim=1).to(torch.bool)[..., None]
            logits = torch.where(valid, logits, torch.full_like(logits, INVALID_LOGIT))
        logits = logits.amax(dim=2).view(b, -1, h4, w4)
        return torch.cat((self.catch_all_conv(fmap), logits), dim=1)
