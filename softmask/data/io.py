"""Frames and label maps on disk: a folder of JPEG/PNG frames (DAVIS ``JPEGImages/480p/<seq>``),
annotation PNGs named like the frames (DAVIS ``Annotations/480p/<seq>``), palette label PNGs out.

Every read error is an InputError naming the file; every write is atomic (temporary file in the
same folder, then rename), so a file that exists is complete.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from softmask.errors import InputError
from softmask.files import atomic_file

logger = logging.getLogger(__name__)

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
# Frame rate of DAVIS's videos: the default where frames carry none (image folders).
DAVIS_FPS = 24.0
# DAVIS marks unlabelled pixels of annotations and ground truth with 255 ("void").
VOID_LABEL = 255
# Label PNGs the model reads: palette or 8-bit greyscale, so a pixel value is an object id.
LABEL_MODES = ("P", "L")
# DAVIS ground truth and results: every single-channel mode a PNG opens in, as the reference
# evaluation (np.array of the image) reads them; colour (RGB) and alpha (LA) images are refused.
DAVIS_LABEL_MODES = ("P", "L", "1", "I", "I;16")
MODE_NAMES = {"P": "palette", "L": "greyscale", "1": "1-bit", "I": "32-bit integer",
              "I;16": "16-bit greyscale"}


def davis_palette() -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map: uint8 [256, 3]; index 0 black, 1 (128, 0, 0), ...

    Colour k spreads the bits of k over the three channels, most significant bit first.
    """
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        code, rgb = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        palette[index] = rgb
    return palette


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``2.png`` before ``10.png`` (ffmpeg's ``%d``
    naming), ``frame9`` before ``frame10``; zero-padded names keep their usual order."""
    return tuple(
        (1, int(part), part) if part.isdigit() else (0, part.lower(), part)
        for part in re.split(r"(\d+)", name)
        if part
    )


def list_frames(video_dir: str | Path) -> list[Path]:
    """The frame files of a folder in natural order (``2.png`` before ``10.png``).

    Raises:
        InputError: the folder does not exist, holds no .jpg/.jpeg/.png file, or holds two frame
            files with the same stem (``00012.png`` and ``00012.jpg``: both would write
            ``masks/00012.png``).
    """
    folder = Path(video_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: video folder does not exist")
    frames = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
        key=lambda p: natural_key(p.name),
    )
    if not frames:
        raise InputError(f"{folder}: no frames ({', '.join(FRAME_SUFFIXES)} files) in the folder")
    by_stem: dict[str, Path] = {}
    for frame in frames:
        if frame.stem in by_stem:
            raise InputError(
                f"{folder}: frames {by_stem[frame.stem].name} and {frame.name} have the same name "
                "(their masks would overwrite each other); keep one"
            )
        by_stem[frame.stem] = frame
    return frames


def read_frame(path: Path) -> np.ndarray:
    """An RGB frame as uint8 [H, W, 3]. Raises InputError naming ``path`` if unreadable."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"{path}: cannot read frame: {error}") from error


def read_label_png(path: Path, modes: tuple[str, ...] = LABEL_MODES,
                   what: str = "annotation") -> np.ndarray:
    """A label map (pixel value = object id) as [H, W]: uint8 for palette (P) and greyscale (L)
    PNGs, bool for 1, int32 for I, uint16 for I;16.

    Args:
        path: the PNG.
        modes: the PIL image modes accepted. ``LABEL_MODES`` for masks the model reads;
            ``DAVIS_LABEL_MODES`` for DAVIS ground truth and results, which the reference
            evaluation reads as any single-channel image.
        what: what the file is, in error messages ("annotation", "mask").

    Raises:
        InputError: missing, unreadable, or in another mode (RGB: colours are not object ids).
    """
    if not Path(path).is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        with Image.open(path) as image:
            if image.mode not in modes:
                kinds = [f"{MODE_NAMES.get(mode, mode)} ({mode})" for mode in modes]
                listed = kinds[0] if len(kinds) == 1 else (
                    f"{', '.join(kinds[:-1])} or {kinds[-1]}")
                raise InputError(
                    f"{path}: {what} must be a {listed} PNG whose pixel values are object ids, "
                    f"got mode {image.mode}"
                )
            return np.array(image)
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"{path}: cannot read {what}: {error}") from error


def read_annotation(path: Path) -> np.ndarray:
    """An annotation PNG (model input) as uint8 [H, W] object ids; void (255) pixels become
    background, never object 255."""
    labels = read_label_png(path)
    void = labels == VOID_LABEL
    if void.any():
        logger.info("%s: %d void (255) pixels treated as background", path, int(void.sum()))
        labels[void] = 0
    return labels


def _atomic_save(image: Image.Image, path: Path, **params) -> None:
    with atomic_file(path) as stream:
        image.save(stream, format=params.pop("format"), **params)


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """Write uint8 labels [H, W] as a DAVIS-palette PNG, atomically."""
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    image.putpalette(davis_palette().tobytes())  # turns the greyscale image into a palette one
    _atomic_save(image, path, format="PNG")


def write_frame_jpeg(path: Path, frame: np.ndarray, quality: int = 90) -> None:
    """Write an RGB frame uint8 [H, W, 3] as JPEG, atomically."""
    _atomic_save(Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)), path,
                 format="JPEG", quality=quality)
