"""Frame sizes through the model: HODOR's resize rule and the padding its backbone needs.

Plain Python (no torch): a deployment install reads an export's geometry without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

# The backbone's total stride: input height and width must be multiples of it.
INPUT_MULTIPLE = 32


@dataclass(frozen=True)
class FrameGeometry:
    """Sizes of a video's frames in pixels (height, width): original, resized (before padding),
    padded (multiples of ``INPUT_MULTIPLE``)."""

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]


def frame_geometry(
    height: int, width: int, min_dim: int | None, max_dim: int | None
) -> FrameGeometry:
    """HODOR's resize rule: scale = min_dim / short side, lowered to max_dim / long side if the long
    side would exceed max_dim; rounded sizes; then padding to multiples of 32."""
    if min_dim is None:
        if max_dim is not None:
            scale = min(1.0, max_dim / max(height, width))
            resized = (round(height * scale), round(width * scale))
        else:
            resized = (height, width)
    else:
        scale = min_dim / min(height, width)
        if max_dim is not None and max(height, width) * scale > max_dim:
            scale = max_dim / max(height, width)
        resized = (round(height * scale), round(width * scale))
    padded = tuple(-(-s // INPUT_MULTIPLE) * INPUT_MULTIPLE for s in resized)
    return FrameGeometry((height, width), resized, padded)
