"""Overlay images: a frame with its objects' masks blended in and their contours drawn.

The DAVIS palette (dark red, dark green, ...) is the format of label files, not meant to be read
over a photo; overlays use ``OVERLAY_COLOURS``, bright colours far apart in hue and lightness
(object k takes colour k-1, cycling after the last), at ``OVERLAY_ALPHA`` opacity, with a
full-opacity contour so that touching objects stay apart.
"""

from __future__ import annotations

import numpy as np

# Opacity of the object colours inside the masks.
OVERLAY_ALPHA = 0.45
# Contour thickness in pixels (each side of an object boundary gets the object's own colour).
CONTOUR_PX = 1
# Colour-blind-safe qualitative colours (Okabe-Ito, then brighter companions), RGB.
OVERLAY_COLOURS = np.array(
    [
        (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
        (213, 94, 0), (204, 121, 167), (255, 255, 255), (255, 80, 80), (120, 255, 120),
        (160, 120, 255), (255, 170, 200),
    ],
    dtype=np.uint8,
)


def overlay_palette() -> np.ndarray:
    """uint8 [256, 3]: index 0 (background) black, object k the ``OVERLAY_COLOURS`` entry k-1."""
    palette = np.zeros((256, 3), np.uint8)
    ids = np.arange(1, 256)
    palette[1:] = OVERLAY_COLOURS[(ids - 1) % len(OVERLAY_COLOURS)]
    return palette


def boundaries(labels: np.ndarray) -> np.ndarray:
    """bool [H, W]: object pixels (label > 0) with a 4-neighbour of another label."""
    edge = np.zeros(labels.shape, bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge & (labels > 0)


def overlay_rgb(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The frame (uint8 [H, W, 3]) with objects of ``labels`` (uint8 [H, W]) blended in at
    ``OVERLAY_ALPHA`` and outlined; background pixels are the frame's own."""
    colours = overlay_palette()[labels].astype(np.float32)
    out = frame.astype(np.float32)
    inside = labels > 0
    out[inside] = (1 - OVERLAY_ALPHA) * out[inside] + OVERLAY_ALPHA * colours[inside]
    edge = boundaries(labels)
    for _ in range(CONTOUR_PX - 1):
        edge = _dilate_within(edge, inside)
    out[edge] = colours[edge]
    return out.round().astype(np.uint8)


def _dilate_within(edge: np.ndarray, inside: np.ndarray) -> np.ndarray:
    grown = edge.copy()
    grown[1:, :] |= edge[:-1, :]
    grown[:-1, :] |= edge[1:, :]
    grown[:, 1:] |= edge[:, :-1]
    grown[:, :-1] |= edge[:, 1:]
    return grown & inside
