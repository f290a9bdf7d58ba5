"""``HodorModel``: feature extractor + encoder + decoder, with differentiable per-frame calls.

State-dict layout for the "hodor" config equals HODOR's checkpoints (``feature_extractor.*``,
``encoder.*``, ``decoder.*``; see ``softmask/model/data/hodor_state_dict.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from softmask.model.config import ModelConfig, resolve_config
from softmask.model.decoder import Decoder
from softmask.model.encoder import Encoder, background_masks
from softmask.model.features import build_features, check_image_size
from softmask.model.shapes import check_decode_inputs, check_encode_inputs


class HodorModel(nn.Module):
    """HODOR architecture. All methods take batched tensors and are differentiable (training).

    Per-frame calls:
        ``features(images)``: normalised, padded images [B, 3, H, W] (H, W multiples of 32)
            -> (f4 [B, C, H/4, W/4], f8 [B, C, H/8, W/8]).
        ``encode(f8, fg_masks, bg_masks=None, fg_valid=None)``: soft masks at stride 8
            -> (fg descriptors [B, I, C], bg descriptors [B, Qb, C]).
        ``decode(f4, f8, fg, bg, fg_valid=None, bg_valid=None)``: descriptors of T frames
            [B, I, T, C] and [B, Qb, T, C] -> logits [B, 1 + Qb + I, H/4, W/4]
            (channels: catch-all, Qb background cells, I objects).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = build_features(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    @property
    def num_bg(self) -> int:
        """Qb, the number of background descriptors."""
        return self.config.num_bg_descriptors

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, H, W] (normalised, H, W multiples of 32) -> (f4, f8)."""
        check_image_size(images)
        return self.feature_extractor(images)

    def background_masks(self, fg_masks: torch.Tensor) -> torch.Tensor:
        """[B, I, h, w] object probabilities -> [B, Qb, h, w] grid cells x (1 - sum of objects)."""
        return background_masks(fg_masks, self.config.background_grid)

    def encode(
        self,
        f8: torch.Tensor,
        fg_masks: torch.Tensor,
        bg_masks: torch.Tensor | None = None,
        fg_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Descriptors from a stride-8 map [B, C, h, w] and soft masks [B, I, h, w] in [0, 1].

        bg_masks [B, Qb, h, w]: None uses ``background_masks(fg_masks)``. fg_valid [B, I] bool marks
        real object slots (None: all). Returns ([B, I, C], [B, Qb, C]).

        Raises:
            InputError: a tensor's shape does not fit the others (the message names it).
        """
        if bg_masks is None:
            bg_masks = self.background_masks(fg_masks)
        check_encode_inputs(f8, fg_masks, bg_masks, fg_valid, self.config.dim, self.num_bg)
        return self.encoder(f8, fg_masks, bg_masks, fg_valid)

    def decode(
        self,
        f4: torch.Tensor,
        f8: torch.Tensor,
        fg: torch.Tensor,
        bg: torch.Tensor,
        fg_valid: torch.Tensor | None = None,
        bg_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits at stride 4 from descriptors [B, I, T, C], [B, Qb, T, C] (see class doc).

        Raises:
            InputError: a tensor's shape does not fit the others, or only one validity mask given.
        """
        check_decode_inputs(f4, f8, fg, bg, fg_valid, bg_valid, self.config.dim, self.num_bg)
        return self.decoder(
            f4,
            f8,
            fg,
            bg,
            self.encoder.fg_query_embed,
            self.encoder.bg_query_embed,
            fg_valid,
            bg_valid,
        )


def build_model(config: ModelConfig | Mapping[str, Any] | str = "hodor") -> HodorModel:
    """A randomly initialised model: ``"hodor"``, ``"tiny"``, a ModelConfig or a dict."""
    return HodorModel(resolve_config(config))
