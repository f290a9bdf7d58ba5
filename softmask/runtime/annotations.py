"""Which frames carry an annotation, from what a user typed.

``--annotations`` (and repeated ``--annotate``) accept:

| spelled | annotates |
| --- | --- |
| ``first.png`` | frame 0 |
| ``17:obj.png`` | frame 17 (the 18th frame of the source, counted from 0) |
| a folder | each PNG in it: for a folder of frames, PNGs named like the frames (DAVIS layout); for a video, PNGs named by frame index (``00017.png`` or ``17.png``) |

An annotation is a palette or greyscale PNG whose pixel values are object ids (0 background).
DAVIS marks unlabelled pixels 255 ("void"); they are treated as background, never as object 255.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from softmask.data.io import read_annotation
from softmask.errors import InputError
from softmask.runtime.sources import FrameSource, ImageFolderSource, MemorySource

_INDEXED = re.compile(r"^(\d+):(.+)$")


@dataclass
class Annotations:
    """Label maps keyed by frame index, and the name errors use for each (its file)."""

    labels: dict[int, np.ndarray] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)

    def add(self, index: int, labels: np.ndarray, source: str) -> None:
        if index in self.labels:
            raise InputError(f"{source}: frame {index} is already annotated by {self.source(index)}")
        self.labels[index] = labels
        self.sources[index] = source

    def source(self, index: int) -> str:
        """The name errors use for frame ``index``'s annotation."""
        return self.sources.get(index, f"annotation of frame {index}")

    def check_indices(self, source: FrameSource) -> None:
        """Raise InputError if an annotated frame lies past ``source``'s known length."""
        if source.frame_count is None:
            return
        outside = sorted(i for i in self.labels if i >= source.frame_count)
        if outside:
            raise InputError(
                f"{self.source(outside[0])}: annotates frame {outside[0]}, but {source.name} has "
                f"{source.frame_count} frames"
            )

    @property
    def largest_id(self) -> int:
        """The largest object id in any annotation (0 if none)."""
        return max((int(a.max()) for a in self.labels.values()), default=0)


def _frame_names(source: FrameSource) -> dict[str, int] | None:
    """Frame stem -> index for sources whose frames are files, else None."""
    if isinstance(source, ImageFolderSource):
        return {p.stem: i for i, p in enumerate(source.paths)}
    if isinstance(source, MemorySource) and source.names_from_files:
        return {p.stem: i for i, p in enumerate(source.frames)}
    return None


def _read_folder(folder: Path, source: FrameSource, into: Annotations) -> None:
    pngs = sorted(folder.glob("*.png"))
    if not pngs:
        raise InputError(f"{folder}: no annotation PNG in the folder")
    names = _frame_names(source)
    if names is not None:
        stray = [p.name for p in pngs if p.stem not in names]
        if stray:
            raise InputError(f"{folder}: annotation file(s) {stray[:10]} match no frame name")
        for png in pngs:
            into.add(names[png.stem], read_annotation(png), str(png))
        return
    stray = [p.name for p in pngs if not p.stem.isdigit()]
    if stray:
        raise InputError(
            f"{folder}: annotation file(s) {stray[:10]} are not named by frame index "
            "(for a video, name them 00000.png, 00017.png, ...)"
        )
    for png in pngs:
        into.add(int(png.stem), read_annotation(png), str(png))


def resolve_annotations(specs: Sequence[str | Path], source: FrameSource) -> Annotations:
    """Read every annotation ``specs`` names, keyed by frame index of ``source``.

    Raises:
        InputError: a file or folder is missing or unreadable, a folder's PNG matches no frame,
            two specs annotate one frame, or an index is past the source's known length.
    """
    found = Annotations()
    for spec in specs:
        text = str(spec)
        match = _INDEXED.match(text)
        if match and not Path(text).exists():
            index, path = int(match.group(1)), Path(match.group(2))
        else:
            index, path = 0, Path(text)
        if path.is_dir() and not match:
            _read_folder(path, source, found)
        elif path.is_file():
            found.add(index, read_annotation(path), str(path))
        else:
            raise InputError(f"{path}: annotation file or folder does not exist")
    found.check_indices(source)
    return found
