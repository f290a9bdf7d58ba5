"""Training clips: 3 frames of a synthetic video, or a static image's pseudo-video.

A clip is (frames [3, 3, H, W] normalised float, labels [3, H, W] long). Frame 0 is the reference
frame; the cycles of ``softmask.train.cycles`` start and end there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from softmask.data.synthetic import SyntheticVideo
from softmask.model.video import PIXEL_MEAN_RGB, PIXEL_STD_RGB

CLIP_FRAMES = 3


@dataclass
class Clip:
    """images [3, 3, H, W] normalised; labels [3, H, W] long (0 background, 1..N)."""

    images: torch.Tensor
    labels: torch.Tensor


def normalise(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] RGB -> float32 [T, 3, H, W], as the model's preprocessing."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(PIXEL_MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD_RGB).view(1, 3, 1, 1)
    return (x - mean) / std


def video_clip(video: SyntheticVideo, rng: np.random.Generator, max_gap: int = 3) -> Clip:
    """Frames t0 < t1 < t2 with gaps of 1..max_gap, optionally played backwards."""
    total = video.frames.shape[0]
    gaps = rng.integers(1, max_gap + 1, size=2)
    while gaps.sum() >= total:
        gaps = np.maximum(gaps - 1, 1)
    start = int(rng.integers(0, total - gaps.sum()))
    ids = [start, start + int(gaps[0]), start + int(gaps.sum())]
    if rng.random() < 0.5:
        ids = ids[::-1]
    return Clip(normalise(video.frames[ids]), torch.from_numpy(video.labels[ids].astype(np.int64)))


def random_affine(rng: np.random.Generator, strength: float = 1.0) -> torch.Tensor:
    """A [2, 3] affine matrix (normalised coordinates): rotation, scale, shear, translation."""
    angle = math.radians(rng.uniform(-15, 15) * strength)
    scale = 1 + rng.uniform(-0.15, 0.15) * strength
    shear = rng.uniform(-0.1, 0.1) * strength
    tx, ty = rng.uniform(-0.12, 0.12, 2) * strength
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    return torch.tensor([[c, -s + shear, tx], [s, c, ty]], dtype=torch.float32)


def warp(images: torch.Tensor, labels: torch.Tensor, theta: torch.Tensor):
    """Apply one affine warp to images [3, H, W] (bilinear, border) and labels [H, W] (nearest;
    pixels from outside become background)."""
    grid = F.affine_grid(theta[None], [1, *images.shape], align_corners=False)
    warped = F.grid_sample(images[None], grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[0]
    warped_labels = F.grid_sample(labels[None, None].float(), grid, mode="nearest",
                                  padding_mode="zeros", align_corners=False)[0, 0].long()
    return warped, warped_labels


def static_clip(video: SyntheticVideo, rng: np.random.Generator) -> Clip:
    """HODOR's static-image mode: three random affine warps of one frame (ground truth known)."""
    t = int(rng.integers(0, video.frames.shape[0]))
    image = normalise(video.frames[t : t + 1])[0]
    labels = torch.from_numpy(video.labels[t].astype(np.int64))
    frames, maps = [], []
    for k in range(CLIP_FRAMES):
        theta = random_affine(rng, strength=0.0 if k == 0 else 1.0)
        warped, warped_labels = warp(image, labels, theta)
        frames.append(warped)
        maps.append(warped_labels)
    return Clip(torch.stack(frames), torch.stack(maps))
