"""HODOR's encoder: object and background descriptors from a frame's stride-8 map and soft masks."""

from __future__ import annotations

import torch
from torch import nn

from softmask.model.config import ModelConfig
from softmask.model.position import sine_position_encoding
from softmask.ops import SoftMaskedAttention

# A pixel belongs to an object / background cell for descriptor initialisation above this value.
INIT_THRESHOLD = 0.5


def grid_cell_masks(height: int, width: int, grid: tuple[int, int], device=None) -> torch.Tensor:
    """[rows*cols, height, width] binary masks of the background grid cells (row-major cells).

    Cells are ``height // rows`` by ``width // cols`` pixels; the last row and column of cells take
    the remainder (as HODOR's).
    """
    rows, cols = grid
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    row_of = torch.clamp(ys // max(height // rows, 1), max=rows - 1)
    col_of = torch.clamp(xs // max(width // cols, 1), max=cols - 1)
    cell = row_of[:, None] * cols + col_of[None, :]  # [H, W]
    ids = torch.arange(rows * cols, device=device)
    return (cell[None] == ids[:, None, None]).float()


def background_masks(object_probs: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Soft background masks: grid cells x (1 - sum of object probabilities).

    object_probs [B, I, h, w] in [0, 1] -> [B, rows*cols, h, w].
    """
    h, w = object_probs.shape[-2:]
    cells = grid_cell_masks(h, w, grid, device=object_probs.device).to(object_probs.dtype)
    return cells[None] * (1.0 - object_probs.sum(dim=1, keepdim=True))


def masked_mean(fmap: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """fmap [B, S, C], weights [B, Q, S] (0/1) -> [B, Q, C]; rows without weight give zeros."""
    total = weights.sum(dim=-1, keepdim=True)
    return torch.matmul(weights, fmap) / total.clamp(min=1.0)


def initial_descriptors(
    fmap: torch.Tensor, fg_masks: torch.Tensor, bg_masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """HODOR's descriptor initialisation, as masked means (no ``nonzero``: it exports).

    Objects: mean of the pixels whose mask > 0.5, or the single argmax pixel if there is none.
    Background cells: mean of the pixels whose mask > 0.5, zeros if there is none.
    Computed without gradient, as in HODOR.

    Args:
        fmap: [B, S, C] stride-8 features (S = h*w, row-major).
        fg_masks: [B, I, S]; bg_masks: [B, Qb, S], values in [0, 1].
    Returns:
        ([B, I, C], [B, Qb, C]).
    """
    fmap = fmap.detach()
    fg_masks = fg_masks.detach()
    fg_sel = (fg_masks > INIT_THRESHOLD).to(fmap.dtype)
    pixel_ids = torch.arange(fg_masks.shape[-1], device=fg_masks.device)
    argmax_sel = (pixel_ids == fg_masks.argmax(dim=-1, keepdim=True)).to(fmap.dtype)
    has_pixels = fg_sel.sum(dim=-1, keepdim=True) > 0
    fg_sel = torch.where(has_pixels, fg_sel, argmax_sel)
    bg_sel = (bg_masks.detach() > INIT_THRESHOLD).to(fmap.dtype)
    return masked_mean(fmap, fg_sel), masked_mean(fmap, bg_sel)


class EncoderLayer(nn.Module):
    """Post-norm layer: descriptor self-attention -> LN -> soft-masked cross-attention -> LN
    -> FFN -> LN."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = SoftMaskedAttention(dim, num_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(dim)
        # Weights at indices 0 and 3: HODOR's (Linear, ReLU, Dropout, Linear, Dropout).
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        masks: torch.Tensor,
        invalid_queries: torch.Tensor | None,
    ) -> torch.Tensor:
        """queries, query_pos [B, Q, C]; keys, values [B, S, C]; masks [B, Q, S];
        invalid_queries [B, Q] bool (True: excluded as a self-attention key) or None."""
        qk = queries + query_pos
        res = self.self_attn(qk, qk, queries, key_padding_mask=invalid_queries, need_weights=False)[
            0
        ]
        queries = self.norm1(queries + self.dropout1(res))
        res = self.cross_attn(queries, keys, values, masks)
        queries = self.norm2(queries + self.dropout2(res))
        return self.norm3(queries + self.ffn(queries))


class Encoder(nn.Module):
    """Descriptors from one frame: ``fg_query_embed`` [C] (shared by objects) and ``bg_query_embed``
    [Qb, C] are the descriptors' learned position embeddings."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.fg_query_embed = nn.Parameter(torch.randn(config.dim))
        self.bg_query_embed = nn.Parameter(torch.randn(config.num_bg_descriptors, config.dim))
        self.attn_layers = nn.ModuleList(
            EncoderLayer(config.dim, config.num_heads, config.encoder_ffn_dim, config.dropout)
            for _ in range(config.encoder_layers)
        )

    def forward(
        self,
        fmap: torch.Tensor,
        fg_masks: torch.Tensor,
        bg_masks: torch.Tensor,
        fg_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode descriptors.

        Args:
            fmap: [B, C, h, w] stride-8 feature map.
            fg_masks: [B, I, h, w] object soft masks in [0, 1] (I may be 0..any).
            bg_masks: [B, Qb, h, w] background soft masks in [0, 1] (see ``background_masks``).
            fg_valid: optional [B, I] bool; False marks padding object slots, which then do not
                influence other descriptors (their own outputs are meaningless). None: all valid.
        Returns:
            (fg descriptors [B, I, C], bg descriptors [B, Qb, C]).
        """
        b, c, h, w = fmap.shape
        num_obj = fg_masks.shape[1]
        num_bg = bg_masks.shape[1]
        pixels = fmap.flatten(2).transpose(1, 2)  # [B, S, C]
        fg_flat = fg_masks.flatten(2).to(pixels.dtype)
        bg_flat = bg_masks.flatten(2).to(pixels.dtype)
        fg_init, bg_init = initial_descriptors(pixels, fg_flat, bg_flat)
        queries = torch.cat((bg_init, fg_init), dim=1)  # HODOR's order: background first
        masks = torch.cat((bg_flat, fg_flat), dim=1)
        query_pos = torch.cat(
            (
                self.bg_query_embed.to(pixels.dtype).expand(b, num_bg, c),
                self.fg_query_embed.to(pixels.dtype).expand(b, num_obj, c),
            ),
            dim=1,
        )
        invalid = None
        if fg_valid is not None:
            bg_ok = torch.ones(b, num_bg, dtype=torch.bool, device=fmap.device)
            invalid = ~torch.cat((bg_ok, fg_valid.to(torch.bool)), dim=1)
        keys = pixels
        if self.config.encoder_key_pos:
            pos = sine_position_encoding(h, w, c, device=fmap.device, dtype=pixels.dtype)
            keys = pixels + pos.flatten(1).transpose(0, 1)[None]
        for layer in self.attn_layers:
            queries = layer(queries, query_pos, keys, pixels, masks, invalid)
        return queries[:, num_bg:], queries[:, :num_bg]
