"""What a run writes, and the output folder's rules.

| file | written | format |
| --- | --- | --- |
| ``masks/<frame>.png`` | always (unless ``mask_video``) | DAVIS palette, pixel = object id |
| ``overlay/<frame>.jpg`` | ``overlay`` with a folder of frames | frame with the objects blended in |
| ``overlay.mp4`` | ``overlay`` with a video, URL or camera | H.264 (libx264), the source's frame rate |
| ``masks.mkv`` | ``mask_video`` | FFV1, 8-bit grey, pixel = object id (lossless) |
| ``report.json`` | at the end | see ``softmask.runtime.pipeline`` |

Every file appears complete or not at all: images are written to a temporary file and renamed;
videos are written to a hidden temporary file that is finalised (trailer written) and renamed when
the run ends, also when it ends by an error, Ctrl-C or SIGTERM, so the frames done stay playable.
A resumed run encodes its videos from frame 0 again and keeps an earlier video that has more
frames than its own (an interrupted resume never shortens a video).

A folder holding an earlier run's outputs is refused unless the run overwrites them (they are
deleted when the run is about to write its first frame, so a run that fails earlier loses
nothing) or resumes (existing mask images are kept and not rewritten).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from softmask.data.io import DAVIS_FPS, write_frame_jpeg, write_label_png
from softmask.data.overlay import overlay_rgb
from softmask.data.video import TEMP_PREFIX, VideoFileWriter
from softmask.errors import InputError

logger = logging.getLogger(__name__)

MASKS_DIR = "masks"
OVERLAY_DIR = "overlay"
OVERLAY_VIDEO = "overlay.mp4"
MASK_VIDEO = "masks.mkv"
REPORT_NAME = "report.json"


def _earlier_outputs(out: Path) -> list[Path]:
    """Files of an earlier run in ``out`` that a new run would write again."""
    found = []
    for folder, pattern in ((MASKS_DIR, "*.png"), (OVERLAY_DIR, "*.jpg")):
        if (out / folder).is_dir():
            found.extend(sorted((out / folder).glob(pattern)))
    found.extend(p for p in (out / OVERLAY_VIDEO, out / MASK_VIDEO, out / REPORT_NAME) if p.exists())
    return found


@dataclass
class OutputFolder:
    """An output folder checked by ``prepare_output_dir``.

    path: the folder. stale: an earlier run's outputs that ``clear`` deletes (``--overwrite``);
    they stay on disk until then, so a run that fails before its first frame loses nothing.
    """

    path: Path
    stale: list[Path] = field(default_factory=list)

    def clear(self) -> None:
        """Delete the earlier run's outputs (once the run is ready to write its own)."""
        for path in self.stale:
            path.unlink(missing_ok=True)
        if self.stale:
            logger.info("removed %d files of an earlier run in %s", len(self.stale), self.path)
        self.stale = []


def prepare_output_dir(
    out_dir: str | Path, overwrite: bool = False, resume: bool = False
) -> OutputFolder:
    """Check that ``out_dir`` can take this run's outputs before any work is done.

    A folder with an earlier run's masks, overlays, label video or report is refused unless
    ``overwrite`` (they are deleted by ``OutputFolder.clear``, which the pipeline calls when it
    is about to write) or ``resume`` (kept; the run skips masks that exist).

    Raises:
        InputError: ``out_dir`` or one of its sub-folders is a file, the folder cannot be written
            (e.g. read-only), or it holds an earlier run's outputs.
    """
    if overwrite and resume:
        raise InputError("--overwrite and --resume exclude each other: choose one")
    out = Path(out_dir)
    for path in (out, out / MASKS_DIR, out / OVERLAY_DIR):
        if path.exists() and not path.is_dir():
            raise InputError(f"{path}: output path is a file, not a folder")
    earlier = _earlier_outputs(out)
    if earlier and not (overwrite or resume):
        masks = sum(1 for p in earlier if p.parent.name == MASKS_DIR)
        raise InputError(
            f"{out}: holds an earlier run's outputs ({masks} masks, {len(earlier) - masks} other "
            "files); pass --overwrite to replace them or --resume to continue after the last mask"
        )
    try:
        (out / MASKS_DIR).mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=out / MASKS_DIR)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"{out}: cannot write output: {error.strerror or error}") from error
    for stale in out.glob(f"{TEMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
    return OutputFolder(out, earlier if overwrite else [])


def _even(n: int) -> bool:
    return n % 2 == 0


class OutputWriter:
    """Writes one processed frame's outputs (the writer thread's sink).

    Args:
        out: the prepared output folder.
        overlay: write overlays: JPEGs per frame (``video_outputs`` False) or ``overlay.mp4``.
        mask_video: write ``masks.mkv`` instead of mask PNGs.
        video_outputs: the source is a video (file, URL, camera): overlays go into a video.
        fps: the source's frame rate (video outputs).
        skip_existing: leave mask and overlay images that exist untouched, and keep a video that
            exists with more frames than this run wrote (resume: an interrupted resume never
            replaces a complete video by a shorter one).
    """

    def __init__(
        self,
        out: Path,
        overlay: bool,
        mask_video: bool,
        video_outputs: bool,
        fps: float | None,
        skip_existing: bool = False,
    ) -> None:
        self.masks_dir = out / MASKS_DIR
        self.overlay_dir = out / OVERLAY_DIR if overlay and not video_outputs else None
        self.skip_existing = skip_existing
        self._out, self._fps = out, fps or DAVIS_FPS
        self._overlay_video = overlay and video_outputs
        self._mask_video = mask_video
        self._videos: dict[str, VideoFileWriter] = {}
        self.written = 0  # masks written (PNG files or frames of masks.mkv)
        self.skipped = 0  # masks that existed (resume)

    def _video(self, name: str, shape: tuple[int, ...]) -> VideoFileWriter:
        if name not in self._videos:
            if name == OVERLAY_VIDEO:
                # 4:2:0 chroma (what players expect) needs even sizes; odd frames keep full chroma.
                pix_fmt = "yuv420p" if _even(shape[0]) and _even(shape[1]) else "yuv444p"
                self._videos[name] = VideoFileWriter(
                    self._out / name, self._fps, "libx264", pix_fmt, "rgb24",
                    {"crf": "20", "preset": "veryfast"}, keep_longer=self.skip_existing,
                )
            else:
                self._videos[name] = VideoFileWriter(
                    self._out / name, self._fps, "ffv1", "gray", "gray",
                    keep_longer=self.skip_existing,
                )
        return self._videos[name]

    def write(self, name: str, timestamp: float, rgb: np.ndarray, labels: np.ndarray) -> None:
        """Write frame ``name``'s outputs (uint8 labels [H, W]; rgb uint8 [H, W, 3] for overlays)."""
        if self._mask_video:
            self._video(MASK_VIDEO, labels.shape).write(labels, timestamp)
            self.written += 1
        else:
            path = self.masks_dir / f"{name}.png"
            if self.skip_existing and path.exists():
                self.skipped += 1
            else:
                write_label_png(path, labels)
                self.written += 1
        if self.overlay_dir is not None:
            path = self.overlay_dir / f"{name}.jpg"
            if not (self.skip_existing and path.exists()):
                write_frame_jpeg(path, overlay_rgb(rgb, labels))
        elif self._overlay_video:
            self._video(OVERLAY_VIDEO, labels.shape).write(overlay_rgb(rgb, labels), timestamp)

    @property
    def videos_kept(self) -> list[str]:
        """Videos of the earlier run kept because they hold more frames than this run's."""
        return sorted(name for name, video in self._videos.items() if video.kept_earlier)

    def close(self) -> None:
        """Finalise the videos (safe to call after an error or twice)."""
        errors = []
        for video in self._videos.values():
            try:
                video.close()
            except Exception as error:  # noqa: BLE001 - close the others, then report
                errors.append(error)
        if errors:
            raise errors[0]
