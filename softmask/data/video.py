"""Video files with PyAV (FFmpeg bundled in the ``av`` wheel): an atomic writer, and the reader
of label videos.

``VideoFileWriter`` writes into a hidden temporary file beside the target and renames it when
closed, after writing the container's trailer: a file under the target name is always complete
and playable, also after an error or Ctrl-C (the caller closes it in a ``finally``). With
``keep_longer`` (a resumed run, which encodes its videos from frame 0 again) an earlier file with
more frames than the new one is kept and the new one discarded, so an interrupted resume never
replaces a complete video by a shorter one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from softmask.files import FILE_MODE

logger = logging.getLogger(__name__)

# Name prefix of the writers' temporary files (a run's output folder removes stale ones).
TEMP_PREFIX = ".softmask-partial-"


class VideoFileWriter:
    """Frames into a video file with PyAV, atomically: a hidden temporary file beside ``path``,
    finalised and renamed by ``close``.

    Args:
        path: the finished file (``.mp4``, ``.mkv``).
        fps: frame rate; timestamps are placed on a 1/fps grid.
        codec, pix_fmt: encoder and its pixel format; ``input_format`` is the arrays' layout
            ("rgb24" for uint8 [H, W, 3], "gray" for uint8 [H, W]).
        keep_longer: at ``close``, keep an existing ``path`` that holds more frames than this
            writer wrote (``kept_earlier`` then says so).
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        codec: str,
        pix_fmt: str,
        input_format: str,
        options: dict[str, str] | None = None,
        keep_longer: bool = False,
    ) -> None:
        import av

        self.path = path
        self.keep_longer = keep_longer
        self.kept_earlier = False
        self._input_format = input_format
        handle, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
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
            earlier = count_frames(self.path) if self.keep_longer and self.path.exists() else 0
            if earlier > self.frames:
                self.kept_earlier = True
                logger.warning("%s: kept the earlier video (%d frames); this run's has only %d",
                               self.path, earlier, self.frames)
            elif self.frames:
                os.chmod(self._tmp, FILE_MODE)
                os.replace(self._tmp, self.path)
        finally:
            self._container = None
            self._tmp.unlink(missing_ok=True)


def count_frames(path: Path) -> int:
    """Frames of a video file's first video stream, counted from its packets (no decoding); 0
    for a file FFmpeg cannot read."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size)
    except (av.error.FFmpegError, OSError, IndexError):
        return 0


def read_label_video(path: str | Path) -> Iterator[np.ndarray]:
    """The label maps of a ``masks.mkv``, uint8 [H, W] per frame, in order."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            yield frame.to_ndarray(format="gray")
