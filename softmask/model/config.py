"""Model configurations: the paper's HODOR ("hodor") and a small model of its family ("tiny")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from softmask.errors import InputError

# Background descriptors sit on a grid of cells; HODOR's supported counts and their (rows, cols).
BACKGROUND_GRIDS: dict[int, tuple[int, int]] = {
    1: (1, 1),
    2: (1, 2),
    4: (2, 2),
    9: (3, 3),
    12: (3, 4),
    16: (4, 4),
}


@dataclass(frozen=True)
class ModelConfig:
    """Every shape-relevant choice of the model; presets: ``PRESETS['hodor']``, ``PRESETS['tiny']``.

    Attributes:
        name: preset name the config started from (informational).
        backbone: "swin_t" (Swin-T + FPN, HODOR's) or "tiny_cnn" (a small CNN + mini FPN).
        dim: width C of the feature maps and descriptors.
        num_heads: attention heads in encoder and decoder (head dim = dim / num_heads).
        encoder_layers, decoder_layers: transformer layers of each.
        encoder_ffn_dim: hidden width of the encoder FFN (HODOR: 1024).
        decoder_ffn_dim: hidden width of the decoder FFN (HODOR: 256, = dim).
        num_bg_descriptors: background descriptors, laid on ``BACKGROUND_GRIDS[n]`` cells.
        mask_reduce_dim: channels of the stride-4 skip added to the upsampled map (HODOR: 64).
        catch_all_hidden_dim: hidden channels of the catch-all conv head (HODOR: dim / 2).
        dropout: dropout probability (training only).
        encoder_key_pos: add a sine position encoding to the encoder's keys (HODOR's
            ``POS_ENCODINGS_IN_FMQ``; False in the released configs).
        decoder_query_pos: add a sine position encoding to the decoder's pixel queries
            (``POS_ENCODINGS_IN_FQM``; True).
        tiny_channels: (stride-2, stride-4, stride-8) widths of the "tiny_cnn" backbone.
    """

    name: str = "hodor"
    backbone: str = "swin_t"
    dim: int = 256
    num_heads: int = 8
    encoder_layers: int = 5
    decoder_layers: int = 5
    encoder_ffn_dim: int = 1024
    decoder_ffn_dim: int = 256
    num_bg_descriptors: int = 9
    mask_reduce_dim: int = 64
    catch_all_hidden_dim: int = 128
    dropout: float = 0.1
    encoder_key_pos: bool = False
    decoder_query_pos: bool = True
    tiny_channels: tuple[int, int, int] = (24, 48, 96)

    def __post_init__(self) -> None:
        if self.backbone not in ("swin_t", "tiny_cnn"):
            raise InputError(f"backbone must be 'swin_t' or 'tiny_cnn', got {self.backbone!r}")
        if self.backbone == "swin_t" and self.dim != 256:
            raise InputError(
                f"the swin_t backbone's FPN is 256 wide; dim must be 256, got {self.dim}"
            )
        if self.dim % self.num_heads != 0:
            raise InputError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.num_bg_descriptors not in BACKGROUND_GRIDS:
            raise InputError(
                f"num_bg_descriptors must be one of {sorted(BACKGROUND_GRIDS)}, "
                f"got {self.num_bg_descriptors}"
            )
        if self.mask_reduce_dim > self.dim:
            raise InputError(f"mask_reduce_dim={self.mask_reduce_dim} exceeds dim={self.dim}")
        for field_name in ("dim", "mask_reduce_dim", "catch_all_hidden_dim"):
            if getattr(self, field_name) % 8 != 0:
                raise InputError(f"{field_name} must be a multiple of 8 (GroupNorm groups)")
        if self.dim % 16 != 0:
            raise InputError(f"dim must be a multiple of 16 (GroupNorm(16, dim)), got {self.dim}")

    @property
    def background_grid(self) -> tuple[int, int]:
        """(rows, cols) of the background descriptors' grid."""
        return BACKGROUND_GRIDS[self.num_bg_descriptors]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (stored in checkpoints)."""
        data = dataclasses.asdict(self)
        data["tiny_channels"] = list(self.tiny_channels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys raise InputError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown model config keys {unknown}; known: {sorted(names)}")
        values = dict(data)
        if "tiny_channels" in values:
            values["tiny_channels"] = tuple(int(c) for c in values["tiny_channels"])
        return cls(**values)


PRESETS: dict[str, ModelConfig] = {
    "hodor": ModelConfig(),
    "tiny": ModelConfig(
        name="tiny",
        backbone="tiny_cnn",
        dim=64,
        num_heads=4,
        encoder_layers=2,
        decoder_layers=2,
        encoder_ffn_dim=256,
        decoder_ffn_dim=64,
        mask_reduce_dim=16,
        catch_all_hidden_dim=32,
    ),
}


def resolve_config(config: ModelConfig | Mapping[str, Any] | str) -> ModelConfig:
    """A ModelConfig from a ModelConfig, a preset name, or a dict (a preset's fields overridden:
    ``{"preset": "tiny", "dim": 128}``, or a full ``to_dict`` form)."""
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, str):
        if config not in PRESETS:
            raise InputError(f"unknown model preset {config!r}; known: {sorted(PRESETS)}")
        return PRESETS[config]
    if isinstance(config, Mapping):
        values = dict(config)
        base = resolve_config(values.pop("preset", values.get("name", "hodor")))
        merged = base.to_dict()
        merged.update(values)
        return ModelConfig.from_dict(merged)
    raise InputError(
        f"model config must be a ModelConfig, a preset name or a dict, got {type(config)}"
    )
