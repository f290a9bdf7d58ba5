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
the run ends, also when it ends by an error or Ctrl-C, so the frames done stay playable.

A folder holding an earlier run's outputs is refused unless the run overwrites them (they are
deleted first) or resumes (existing mask images are kept and not rewritten).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from softmask.data.io import write_frame_jpeg, write_label_png
from softmask.data.overlay import overlay_rgb
from softmask.errors import InputError

logger = logging.getLogger(__name__)

MASKS_DIR = "masks"
OVERLAY_DIR = "overlay"
OVERLAY_VIDEO = "overlay.mp4"
MASK_VIDEO = "masks.mkv"
REPORT_NAME = "report.json"
# Hidden temporary files of our video writers (removed when a run prepares the folder).
_TEMP_PREFIX = ".softmask-partial-"


def _earlier_outputs(out: Path) -> list[Path]:
    """Files of an earlier run in ``out`` that a new run would write again."""
    found = []
    for folder, pattern in ((MASKS_DIR, "*.png"), (OVERLAY_DIR, "*.jpg")):
        if (out / folder).is_dir():
            found.extend(sorted((out / folder).glob(pattern)))
    found.extend(p for p in (out / OVERLAY_VIDEO, out / MASK_VIDEO, out / REPORT_NAME) if p.exists())
    return found


def prepare_output_dir(out_dir: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Check that ``out_dir`` can take this run's outputs before any work is done.

    A folder with an earlier run's masks, overlays or report is refused unless ``overwrite``
    (those files are deleted) or ``resume`` (kept; the run skips masks that exist).

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
        handle, probe = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=out / MASKS_DIR)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"{out}: cannot write output: {error.strerror or error}") from error
    for stale in out.glob(f"{_TEMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
    if overwrite:
        for path in earlier:
            path.unlink()
        logger.info("removed %d files of an earlier run in %s", len(earlier), out)
    return out


class VideoFileWriter:
    """Frames into a video file with PyAV, atomically: a hidden temporary file beside ``path``,
    finalised and renamed by ``close``.

    Args:
        path: the finished file (``.mp4``, ``.mkv``).
        fps: frame rate; timestamps are placed on a 1/fps grid.
        codec, pix_fmt: encoder and its pixel format; ``input_format`` is the arrays' layout
            ("rgb24" for uint8 [H, W, 3], "gray" for uint8 [H, W]).
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        codec: str,
        pix_fmt: str,
        input_format: str,
        options: dict[str, str] | None = None,
    ) -> None:
        import av

        self.path = path
        self._input_format = input_format
        handle, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
        os.close(handle)
        self._tmp = Path(tmp)
        self._rate = Fraction(fps).limit_denominator(1001)
        self._container = av.open(str(self._tmp), "w")
        self._stream = self._container.add_stream(codec, rate=self._rate, options=options or {})
        self._stream.pix_fmt = pix_fmt
        self._last_pts = -1
        self.frames = 0

    def write(self, image: np.ndarray, timestamp: float) -> None:
        """Append ``image`` shown at ``timestamp`` seconds (later than the previous one)."""
        import av

        if self.frames == 0:
            self._stream.height, self._stream.width = image.shape[:2]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=self._input_format)
        # Timestamps of a live stream with dropped frames skip grid points; never go backwards.
        pts = max(round(timestamp * self._rate), self._last_pts + 1)
        frame.pts, self._last_pts = pts, pts
        frame.time_base = 1 / self._rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, write the trailer, rename into place (nothing if no frame came)."""
        if self._container is None:
            return
        try:
            if self.frames:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            self._container.close()
            if self.frames:
                os.replace(self._tmp, self.path)
        finally:
            self._container = None
            self._tmp.unlink(missing_ok=True)


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
        skip_existing: leave mask and overlay images that exist untouched (resume).
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
        self._out, self._fps = out, fps or 24.0
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
                    {"crf": "20", "preset": "veryfast"},
                )
            else:
                self._videos[name] = VideoFileWriter(
                    self._out / name, self._fps, "ffv1", "gray", "gray"
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


def read_mask_video(path: str | Path) -> Iterator[np.ndarray]:
    """The label maps of a ``masks.mkv``, uint8 [H, W] per frame, in order."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            yield frame.to_ndarray(format="gray")
