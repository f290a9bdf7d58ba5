"""Feature extractors: image [B, 3, H, W] -> (stride-4 map, stride-8 map), each [B, C, h, w].

``SwinFPNFeatures`` is HODOR's (Swin-T + FPN to 256 channels, GroupNorm(16) per level; state-dict
names ``bb_fpn.0.*`` (Swin), ``bb_fpn.1.*`` (FPN), ``norm_layers.0..4``). ``TinyCNNFeatures`` is a
small CNN + two-level FPN with the same outputs, for the "tiny" config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softmask.errors import InputError
from softmask.model.config import ModelConfig
from softmask.model.geometry import INPUT_MULTIPLE
from softmask.model.swin import SwinTransformer


class _ConvUnit(nn.Module):
    """One convolution under the attribute name ``conv`` (mmcv ConvModule's checkpoint names)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FPN(nn.Module):
    """Feature pyramid: 1x1 laterals, nearest top-down sums, 3x3 output convs.

    HODOR's FPN has five outputs (the fifth a stride-2 max-pool of the fourth) but only strides 4
    and 8 are consumed, so only those two output convs run; the others keep their parameters so
    checkpoints load.
    """

    def __init__(self, in_channels: list[int], out_channels: int, used_outputs: int = 2) -> None:
        super().__init__()
        self.used_outputs = used_outputs
        self.lateral_convs = nn.ModuleList(_ConvUnit(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            _ConvUnit(out_channels, out_channels, 3) for _ in in_channels
        )

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return [self.fpn_convs[i](laterals[i]) for i in range(self.used_outputs)]


class SwinFPNFeatures(nn.Module):
    """HODOR's feature extractor (Swin-T + FPN, 256 channels)."""

    def __init__(self) -> None:
        super().__init__()
        swin = SwinTransformer()
        self.bb_fpn = nn.ModuleList([swin, FPN(swin.num_features, 256)])
        self.norm_layers = nn.ModuleList(nn.GroupNorm(16, 256) for _ in range(5))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f4, f8 = self.bb_fpn[1](self.bb_fpn[0](images))
        return self.norm_layers[0](f4), self.norm_layers[1](f8)


def _conv_gn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.ReLU(inplace=True),
    )


class TinyCNNFeatures(nn.Module):
    """Small CNN backbone: stride 2 -> 4 -> 8 conv stages, then a two-level FPN to ``dim``."""

    def __init__(self, dim: int, channels: tuple[int, int, int]) -> None:
        super().__init__()
        c2, c4, c8 = channels
        self.stage4 = nn.Sequential(
            _conv_gn_relu(3, c2, stride=2), _conv_gn_relu(c2, c4, stride=2), _conv_gn_relu(c4, c4)
        )
        self.stage8 = nn.Sequential(_conv_gn_relu(c4, c8, stride=2), _conv_gn_relu(c8, c8))
        self.fpn = FPN([c4, c8], dim)
        self.norm_layers = nn.ModuleList(nn.GroupNorm(16, dim) for _ in range(2))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x4 = self.stage4(images)
        x8 = self.stage8(x4)
        f4, f8 = self.fpn([x4, x8])
        return self.norm_layers[0](f4), self.norm_layers[1](f8)


def build_features(config: ModelConfig) -> nn.Module:
    """The feature extractor named by ``config.backbone``."""
    if config.backbone == "swin_t":
        return SwinFPNFeatures()
    return TinyCNNFeatures(config.dim, config.tiny_channels)


def check_image_size(images: torch.Tensor) -> None:
    """Raise InputError unless images is [B, 3, H, W] with H, W multiples of 32."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    h, w = int(images.shape[-2]), int(images.shape[-1])
    if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
        raise InputError(
            f"image size {h}x{w} is not a multiple of {INPUT_MULTIPLE}; pad it first "
            "(softmask.model.video.preprocess_frame pads frames)"
        )
