"""Frame sources: everything the runtime reads video from, behind one iterator.

A source yields ``Frame(index, timestamp, rgb, name)`` in stream order:

| source | spelled | frame names (mask files) | timestamps | live by default |
| --- | --- | --- | --- | --- |
| folder of JPEG/PNG images | a folder path | the file stems | index / fps (``--fps``, default 24) | no |
| video file (mp4, mkv, webm, avi, ...) | a file path | ``00000``, ``00001``, ... | container pts | no |
| URL that FFmpeg opens | ``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ... | as video files | pts | rtsp, rtmp, udp |
| V4L2 camera | ``/dev/video0`` or ``camera:0`` | as video files | pts | yes |
| frames already in memory | a list of arrays or files (Python API) | ``00000``, ... / file stems | index / fps | no |

Video, URLs and cameras are decoded with PyAV (FFmpeg bundled in the ``av`` wheel). A source that
cannot be opened or read raises ``InputError`` naming the source (and the frame index, when it
fails mid-stream); frames before the failure were yielded whole.

Sources decode as fast as they are read; pacing a file at its frame rate (``--realtime``) and
dropping frames in live mode are the pipeline's business (``softmask.runtime.pipeline``).
``first_frame()`` decodes the first frame ahead (the backend is built for its size); iterating
yields it again, without decoding it twice.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softmask.data.io import DAVIS_FPS, list_frames, read_frame
from softmask.errors import InputError
from softmask.redact import redact

logger = logging.getLogger(__name__)

# FFmpeg's (open, read) timeouts for network sources, in seconds.
NETWORK_TIMEOUT_S = (15.0, 15.0)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".flv", ".mpg",
                  ".mpeg", ".y4m", ".gif")
# Containers whose index may sit at the end of the file (read only where FFmpeg can seek).
_SEEKING_CONTAINERS = (".mp4", ".m4v", ".mov", ".3gp")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")
_CAMERA = re.compile(r"^(?:camera:(\d+)|/dev/video(\d+))$")
# FFmpeg protocols a source may use, by what it is (FFmpeg's protocol_whitelist): a URL only the
# protocols its scheme needs, a local file only local ones, so a playlist or reference file can
# never make softmask fetch from the network or read other files.
PROTOCOLS = {
    "http": "http,https,tcp,tls,crypto",
    "https": "http,https,tcp,tls,crypto",
    "rtsp": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "rtsps": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "rtmp": "rtmp,rtmps,tcp,tls",
    "rtmps": "rtmp,rtmps,tcp,tls",
    "udp": "udp,rtp",
    "rtp": "rtp,udp",
    "srt": "srt",
    "tcp": "tcp",
}
LOCAL_PROTOCOLS = "file,crypto,data"
# Seconds a camera may take to open (V4L2 can block on a device that does not answer).
CAMERA_OPEN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    index: position in the source, from 0 (frames dropped in live mode leave gaps downstream).
    timestamp: seconds since the source's first frame.
    rgb: uint8 [H, W, 3].
    name: the stem its mask is written under (``masks/<name>.png``).
    origin: what errors call the frame (its file, or "<source> frame <index>").
    """

    index: int
    timestamp: float
    rgb: np.ndarray
    name: str
    origin: str = ""


class Pacer:
    """Real-time pacing of a file or folder: ``wait(index)`` sleeps until frame ``index`` is due
    at ``fps`` frames per second, counted from the first call (as a camera would deliver it)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self._start: float | None = None

    def wait(self, index: int) -> None:
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        delay = self._start + index / self.fps - now
        if delay > 0:
            time.sleep(delay)


def index_name(index: int) -> str:
    """Mask file stem of frame ``index`` of a video source: ``00017``."""
    return f"{index:05d}"


class FrameSource:
    """Base of every source: iterate it for ``Frame``s; ``close`` releases it (sources are
    context managers too).

    Attributes:
        name: what errors call the source (path, URL, camera device).
        kind: "folder", "video", "url", "camera" or "memory".
        fps: frames per second (None where unknown).
        live: frames arrive at their own pace and should be dropped, not queued, when the model
            falls behind (cameras, rtsp/rtmp/udp); the pipeline's default for ``--live``.
        frame_count: frames the source says it holds (None where unknown: live streams, some
            containers).
        names_from_files: mask names are the frame files' stems (folders), not frame indices.
    """

    name: str = ""
    kind: str = ""
    fps: float | None = None
    live: bool = False
    frame_count: int | None = None
    names_from_files: bool = False

    def __init__(self) -> None:
        self._decoding: Iterator[Frame] | None = None
        self._peeked: Frame | None = None

    def first_frame(self) -> Frame:
        """The first frame, decoded now and yielded again by iteration.

        Raises:
            InputError: the source has no frame.
        """
        if self._peeked is None:
            if self._decoding is not None:
                raise RuntimeError("first_frame() after iteration started")
            self._decoding = self._frames()
            self._peeked = next(self._decoding, None)
            if self._peeked is None:
                raise InputError(f"{self.name}: holds no frame")
        return self._peeked

    def __iter__(self) -> Iterator[Frame]:
        if self._peeked is not None:
            yield self._peeked
        else:
            self._decoding = self._frames()
        yield from self._decoding

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release files and connections (idempotent)."""

    def __enter__(self) -> FrameSource:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageFolderSource(FrameSource):
    """A folder of JPEG/PNG frames in natural order (``2.png`` before ``10.png``), all one size."""

    kind = "folder"
    names_from_files = True

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        super().__init__()
        self.paths = list_frames(folder)
        self.name = str(folder)
        self.fps = fps or DAVIS_FPS
        self.frame_count = len(self.paths)

    def _frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            yield Frame(index, index / self.fps, read_frame(path), path.stem, str(path))


class MemorySource(FrameSource):
    """Frames given in memory: uint8 [H, W, 3] arrays (named by index) or image files (named by
    stem), e.g. from ``softmask.runtime.run_frames``."""

    kind = "memory"

    def __init__(self, frames: Sequence[np.ndarray | Path], fps: float | None = None) -> None:
        super().__init__()
        self.frames = list(frames)
        self.name = "frames"
        self.fps = fps or DAVIS_FPS
        self.frame_count = len(self.frames)
        self.names_from_files = bool(self.frames) and isinstance(self.frames[0], Path)

    def _frames(self) -> Iterator[Frame]:
        for index, frame in enumerate(self.frames):
            if isinstance(frame, Path):
                yield Frame(index, index / self.fps, read_frame(frame), frame.stem, str(frame))
            else:
                yield Frame(
                    index, index / self.fps, np.asarray(frame), index_name(index), f"frame {index}"
                )


def _import_av():
    try:
        import av
    except ImportError as error:  # a core dependency; only a broken install gets here
        raise InputError(f"reading video needs PyAV (`pip install av`): {error}") from error
    return av


class VideoSource(FrameSource):
    """A video file, URL or V4L2 camera, decoded by FFmpeg (PyAV) in the iterating thread.

    Args:
        spec: file path, URL, ``/dev/videoN`` or ``camera:N``.
    """

    def __init__(self, spec: str) -> None:
        super().__init__()
        self._decoding_lock = threading.Lock()
        av = _import_av()
        self._av = av
        options: dict[str, object] = {}
        camera = _CAMERA.match(spec)
        if camera:
            device = f"/dev/video{camera.group(1) or camera.group(2)}"
            self.kind, self.name, self.live = "camera", device, True
            options["format"] = "v4l2"
            options["options"] = {"protocol_whitelist": LOCAL_PROTOCOLS}
        elif _URL.match(spec):
            scheme = spec.split("://", 1)[0].lower()
            self.kind, self.name = "url", redact(spec)
            if scheme not in PROTOCOLS:
                raise InputError(f"{self.name}: {scheme}:// is not a supported video URL "
                                 f"(supported: {', '.join(p + '://' for p in PROTOCOLS)})")
            self.live = scheme in _LIVE_SCHEMES
            options["timeout"] = NETWORK_TIMEOUT_S
            options["options"] = {"protocol_whitelist": PROTOCOLS[scheme]}
            if scheme in ("rtsp", "rtsps"):
                # TCP: a lost UDP packet would corrupt frames silently.
                options["options"]["rtsp_transport"] = "tcp"
        else:
            path = Path(spec)
            self.kind, self.name = "video", str(path)
            if not path.exists():
                raise InputError(f"{path}: video file does not exist")
            if path.is_dir():
                raise InputError(f"{path}: is a folder (a folder of frames is read as images)")
            spec = str(path)
            options["options"] = {"protocol_whitelist": LOCAL_PROTOCOLS}
        try:
            if self.kind == "camera":
                self._container = _open_within(av, spec, options, CAMERA_OPEN_TIMEOUT_S, self.name)
            else:
                self._container = av.open(spec, **options)
        except (av.error.FFmpegError, OSError) as error:
            raise InputError(f"{self.name}: cannot open: {_describe(error)}{self._hint()}") from error
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{self.name}: holds no video stream")
        self._stream = self._container.streams.video[0]
        # FFmpeg's default slice threading: frame threading would hide decode errors of a
        # truncated file (the stream just ends early).
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.frame_count = None if self.live else (self._stream.frames or None)

    def _hint(self) -> str:
        if self.kind == "url" and self.name.lower().split("?")[0].endswith(_SEEKING_CONTAINERS):
            return (
                " (an MP4/MOV whose index sits at the end of the file can only be read where "
                "FFmpeg can seek: serve it with HTTP range requests, or remux it with "
                "`ffmpeg -i in.mp4 -c copy -movflags faststart out.mp4`)"
            )
        if self.kind == "video" and (address := _network_reference(Path(self.name))):
            return (f" (it refers to the network address {redact(address)}; a local file may only "
                    f"use FFmpeg's local protocols {LOCAL_PROTOCOLS}: open the URL itself)")
        if self.kind == "camera":
            return " (is the camera connected, and is this user in the `video` group?)"
        return ""

    def _next_frame(self, frames: Iterator) -> tuple[float | None, np.ndarray] | None:
        """(pts in seconds, RGB) of the next decoded frame, None at the end; holds the lock that
        ``close`` takes, so the container is never closed under a running decode."""
        with self._decoding_lock:
            decoded = next(frames, None)
            return None if decoded is None else (decoded.time, decoded.to_ndarray(format="rgb24"))

    def _frames(self) -> Iterator[Frame]:
        index = 0
        first_time: float | None = None
        frames = self._container.decode(self._stream)
        try:
            while (decoded := self._next_frame(frames)) is not None:
                when, rgb = decoded
                if when is None:
                    when = index / self.fps if self.fps else float(index)
                if first_time is None:
                    first_time = when
                yield Frame(
                    index, max(0.0, when - first_time), rgb, index_name(index),
                    f"{self.name} frame {index}",
                )
                index += 1
        except (self._av.error.FFmpegError, OSError) as error:
            hint = " (file truncated?)" if self.kind == "video" else self._hint()
            raise InputError(
                f"{self.name}: cannot decode frame {index} ({index} frames were read): "
                f"{_describe(error)}{hint}"
            ) from error
        if self.frame_count and index < self.frame_count:
            logger.warning(
                "%s: the container lists %d frames but only %d decoded (file truncated?)",
                self.name, self.frame_count, index,
            )

    def close(self) -> None:
        # A decode blocked in FFmpeg (a stalled network read, up to NETWORK_TIMEOUT_S) holds the
        # lock: closing the container under it would be undefined behaviour, so it is left to
        # the process's end instead.
        if not self._decoding_lock.acquire(timeout=1.0):
            logger.warning("%s: still reading; left open", self.name)
            return
        try:
            self._container.close()
            self._decoding = None
        finally:
            self._decoding_lock.release()


def _network_reference(path: Path) -> str | None:
    """The first URL (other than file:) in the start of a text file such as an HLS playlist or
    an FFmpeg concat list, or None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(r"\b(?!file:)[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"']+", head)
    return found.group(0) if found else None


def _open_within(av, spec: str, options: dict, seconds: float, name: str):
    """``av.open`` in a helper thread, waited for at most ``seconds`` (a device that never answers
    is left to that daemon thread, not to the caller)."""
    result: list = []

    def opening() -> None:
        try:
            result.append(av.open(spec, **options))
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            result.append(error)

    thread = threading.Thread(target=opening, name="softmask-camera-open", daemon=True)
    thread.start()
    thread.join(seconds)
    if not result:
        raise InputError(f"{name}: did not open within {seconds:g} s (is the camera in use or "
                         "not answering?)")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _describe(error: BaseException) -> str:
    """FFmpeg's message without PyAV's errno prefix."""
    message = getattr(error, "strerror", None) or str(error)
    return str(message).rstrip(".")


def is_video_spec(spec: str | Path) -> bool:
    """Whether ``spec`` names a video file, URL or camera (not a folder of images)."""
    text = str(spec)
    return bool(_URL.match(text) or _CAMERA.match(text)) or (
        not Path(text).is_dir() and Path(text).suffix.lower() in VIDEO_SUFFIXES
    )


def open_source(
    spec: str | Path | Sequence[np.ndarray | Path] | FrameSource,
    *,
    fps: float | None = None,
) -> FrameSource:
    """Open a frame source from what a user typed (or frames in memory).

    Args:
        spec: a folder of images, a video file, a URL, ``/dev/videoN`` / ``camera:N``, a
            sequence of uint8 [H, W, 3] arrays / image paths, or a source (returned as it is).
        fps: frame rate of a folder or in-memory frames (default 24); refused for video, whose
            container says.

    Raises:
        InputError: the source does not exist or cannot be opened (one line naming it), or
            ``fps`` was given for a video.
    """
    if isinstance(spec, FrameSource):
        return spec
    if not isinstance(spec, (str, Path)):
        return MemorySource(spec, fps=fps)
    text = str(spec)
    if is_video_spec(text) or (Path(text).is_file() and not _URL.match(text)):
        if fps is not None:
            raise InputError(
                f"--fps sets the frame rate of a folder of frames; {text} carries its own"
            )
        return VideoSource(text)
    if not Path(text).exists():
        raise InputError(f"{text}: no such folder, video file, URL or camera")
    return ImageFolderSource(text, fps=fps)
