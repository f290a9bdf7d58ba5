"""Short test videos made with PyAV: synthetic objects moving over a textured background, written
as files in several containers and codecs, plus annotation PNGs (shared by the source, pipeline,
CLI and serving tests)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image

from softmask.data.io import davis_palette


def moving_objects(frames: int, height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]: a bright square moving right and a disc moving down over noise."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 80, (frames, height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for t in range(frames):
        video[t, 8:28, 6 + t : 26 + t] = (230, 200, 40)
        disc = (yy - (12 + t)) ** 2 + (xx - 70) ** 2 < 64
        video[t][disc] = (40, 160, 230)
    return video


def first_annotation(height: int = 64, width: int = 96) -> np.ndarray:
    """uint8 [H, W]: frame 0's objects of ``moving_objects`` (1 = square, 2 = disc)."""
    labels = np.zeros((height, width), np.uint8)
    labels[8:28, 6:26] = 1
    yy, xx = np.mgrid[:height, :width]
    labels[(yy - 12) ** 2 + (xx - 70) ** 2 < 64] = 2
    return labels


def write_label_png(path: Path, labels: np.ndarray) -> Path:
    image = Image.fromarray(labels)
    image.putpalette(davis_palette().tobytes())
    image.save(path)
    return path


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    codec: str = "libx264",
    lossless: bool = False,
    faststart: bool = True,
) -> Path:
    """Encode uint8 [T, H, W, 3] frames. ``lossless`` uses codecs that decode to the exact RGB
    input (FFV1 in RGB, or libx264rgb at qp 0); ``faststart`` puts an MP4's index first."""
    options = {"movflags": "faststart"} if faststart and path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as container:
        if lossless:
            codec = "ffv1" if path.suffix == ".mkv" else "libx264rgb"
            stream = container.add_stream(codec, rate=fps, options={"qp": "0"} if codec ==
                                          "libx264rgb" else {})
            stream.pix_fmt = "bgr0" if codec == "ffv1" else "rgb24"
        else:
            stream = container.add_stream(codec, rate=fps)
            stream.pix_fmt = "yuv420p"
        stream.height, stream.width = frames.shape[1:3]
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) with Python's http.server, which has no range
    requests; yields the base URL; always shut down."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _RecordingHandler(_QuietHandler):
    """Serves files as ``_QuietHandler`` and appends each request line's path to
    ``self.server.requests``."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        super().do_GET()

    def do_HEAD(self) -> None:
        self.server.requests.append(self.path)
        super().do_HEAD()


@contextlib.contextmanager
def recording_http_server(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """``http_server`` that also records every requested path: yields (base URL, paths)."""
    handler = functools.partial(_RecordingHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
