"""Seeded synthetic video object segmentation (VOS) videos, written in the DAVIS layout.

Each video: a textured background (smooth noise, stripes or a gradient, random colours) and 1-5
textured objects (ellipses, convex polygons, stars, blobs) that translate, rotate and change scale,
drawn back to front (occlusions: the label map shows the front-most object). An object may enter
mid-video (it is absent from frame 0 and first appears at a later frame).

Object ids: objects present in frame 0 get ids 1..k in drawing order of their id; objects that
enter later get the ids after those. The DAVIS 2017 protocol evaluates only the objects of the
first ground-truth frame, so late objects are labelled in later frames' ground truth but not
evaluated there; ``SyntheticVideo.first_frames`` tells when each object first appears, for
runtimes that take annotations at later frames (YouTube-VOS style).

Everything is a pure function of the seed: the same seed gives the same pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softmask.data.io import DAVIS_FPS, write_frame_jpeg, write_label_png
from softmask.data.video import VideoFileWriter
from softmask.errors import InputError

logger = logging.getLogger(__name__)

SHAPES = ("ellipse", "polygon", "star", "blob")
# Angular samples of an object's outline (radius as a function of angle).
OUTLINE_SAMPLES = 128


@dataclass(frozen=True)
class SyntheticVideo:
    """frames uint8 [T, H, W, 3] RGB; labels uint8 [T, H, W] (0 background, 1..N objects);
    first_frames: object id -> index of the first frame where it is visible."""

    name: str
    frames: np.ndarray
    labels: np.ndarray
    first_frames: dict[int, int]

    @property
    def num_objects(self) -> int:
        return len(self.first_frames)

    def annotations(self) -> dict[int, np.ndarray]:
        """Frame index -> label map holding the objects that first appear at that frame."""
        out: dict[int, np.ndarray] = {}
        for obj, t in sorted(self.first_frames.items()):
            labels = out.setdefault(t, np.zeros_like(self.labels[t]))
            labels[self.labels[t] == obj] = obj
        return out


@dataclass(frozen=True)
class _Object:
    outline: np.ndarray  # [OUTLINE_SAMPLES] radius per angle, in units of the object's size
    size: float  # pixels
    colour: np.ndarray  # [3] float
    colour2: np.ndarray  # [3] float
    pattern: str
    frequency: float
    start: np.ndarray  # [2] centre (y, x) at the first frame, pixels
    velocity: np.ndarray  # [2] pixels per frame
    angle: float
    spin: float  # radians per frame
    scale_amp: float
    scale_period: float
    enters: int  # first frame index


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """[H, W] in [0, 1]: bilinear upsampling of a coarse random grid."""
    coarse = rng.random((cells + 1, cells + 1))
    ys = np.linspace(0, cells, height)
    xs = np.linspace(0, cells, width)
    y0, x0 = np.floor(ys).astype(int).clip(0, cells - 1), np.floor(xs).astype(int).clip(0, cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float32 [H, W, 3] in [0, 255]."""
    kind = rng.choice(["noise", "stripes", "gradient"])
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    if kind == "noise":
        t = _smooth_noise(rng, height, width, int(rng.integers(3, 9)))
    elif kind == "stripes":
        yy, xx = np.mgrid[0:height, 0:width]
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(12, 40)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period)
    else:
        yy, xx = np.mgrid[0:height, 0:width]
        theta = rng.uniform(0, 2 * np.pi)
        t = np.cos(theta) * xx / width + np.sin(theta) * yy / height
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
    image = c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]
    image += rng.normal(0, 4, (height, width, 3))
    return image.clip(0, 255).astype(np.float32)


def _outline(rng: np.random.Generator, shape: str) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, OUTLINE_SAMPLES, endpoint=False)
    if shape == "ellipse":
        ratio = rng.uniform(0.5, 1.0)
        return ratio / np.sqrt((ratio * np.cos(angles)) ** 2 + np.sin(angles) ** 2)
    if shape == "polygon":
        corners = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        radii = rng.uniform(0.7, 1.0, len(corners))
        px, py = radii * np.cos(corners), radii * np.sin(corners)
        return _polygon_radius(px, py, angles)
    if shape == "star":
        points = int(rng.integers(4, 8))
        inner = rng.uniform(0.4, 0.65)
        return inner + (1 - inner) * (0.5 + 0.5 * np.cos(points * angles))
    harmonics = sum(
        rng.uniform(0.05, 0.18) * np.cos(k * angles + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    return 0.8 + harmonics


def _polygon_radius(px: np.ndarray, py: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Radius of a star-shaped polygon (vertices around the origin) along each angle."""
    radius = np.full(angles.shape, 1e-3)
    for a in range(len(px)):
        b = (a + 1) % len(px)
        # Ray (cos t, sin t) * r meets segment A + u (B - A): solve the 2x2 system per angle.
        ex, ey = px[b] - px[a], py[b] - py[a]
        dx, dy = np.cos(angles), np.sin(angles)
        det = dx * (-ey) - dy * (-ex)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (px[a] * (-ey) - py[a] * (-ex)) / det
            u = (dx * py[a] - dy * px[a]) / det
        hit = (np.abs(det) > 1e-9) & (u >= 0) & (u <= 1) & (r > 0)
        radius = np.where(hit, np.maximum(radius, np.nan_to_num(r)), radius)
    return radius


def _make_object(rng, height, width, frames, enters) -> _Object:
    size = rng.uniform(0.12, 0.24) * min(height, width)
    speed = rng.uniform(0.2, 1.2) * min(height, width) / max(frames, 1) * 0.6
    heading = rng.uniform(0, 2 * np.pi)
    start = np.array([rng.uniform(0.25, 0.75) * height, rng.uniform(0.2, 0.8) * width])
    if enters > 0:
        # Start outside the frame and move in.
        side = rng.integers(4)
        start = np.array([
            [-size * 0.9, rng.uniform(0.3, 0.7) * width],
            [height + size * 0.9, rng.uniform(0.3, 0.7) * width],
            [rng.uniform(0.3, 0.7) * height, -size * 0.9],
            [rng.uniform(0.3, 0.7) * height, width + size * 0.9],
        ][side])
        target = np.array([height / 2, width / 2])
        heading = np.arctan2(*(target - start))
        speed = max(speed, 1.6 * size / max(frames - enters, 1))
    return _Object(
        outline=_outline(rng, rng.choice(SHAPES)),
        size=size,
        colour=rng.uniform(0, 255, 3),
        colour2=rng.uniform(0, 255, 3),
        pattern=str(rng.choice(["plain", "stripes", "checker", "spots"])),
        frequency=rng.uniform(0.15, 0.45),
        start=start,
        velocity=speed * np.array([np.sin(heading), np.cos(heading)]),
        angle=rng.uniform(0, 2 * np.pi),
        spin=rng.uniform(-0.06, 0.06),
        scale_amp=rng.uniform(0.0, 0.2),
        scale_period=rng.uniform(10, 30),
        enters=enters,
    )


def _render(obj: _Object, t: int, height: int, width: int, yy, xx):
    """(inside mask [H, W] bool, colour [H, W, 3]) of ``obj`` at frame t (None before it enters)."""
    steps = t - obj.enters
    if steps < 0:
        return None
    centre = obj.start + obj.velocity * steps
    if obj.enters == 0:
        # Bounce off the borders so objects of frame 0 stay in view.
        span = np.array([height, width], dtype=np.float64)
        period = 2 * span
        centre = np.abs(np.mod(centre, period) - period) % period
        centre = np.where(centre > span, period - centre, centre)
    angle = obj.angle + obj.spin * steps
    scale = obj.size * (1 + obj.scale_amp * np.sin(2 * np.pi * t / obj.scale_period))
    dy, dx = yy - centre[0], xx - centre[1]
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / scale
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / scale
    rho = np.hypot(u, v)
    theta = np.mod(np.arctan2(v, u), 2 * np.pi)
    index = (theta / (2 * np.pi) * OUTLINE_SAMPLES).astype(int) % OUTLINE_SAMPLES
    inside = rho <= obj.outline[index]
    f = obj.frequency * 2 * np.pi * 4
    if obj.pattern == "stripes":
        mix = 0.5 + 0.5 * np.sin(f * u)
    elif obj.pattern == "checker":
        mix = ((np.floor(u * f / np.pi) + np.floor(v * f / np.pi)) % 2).astype(np.float64)
    elif obj.pattern == "spots":
        mix = (np.sin(f * u) * np.sin(f * v) > 0.4).astype(np.float64)
    else:
        mix = np.zeros_like(u)
    colour = obj.colour[None, None] * (1 - mix[..., None]) + obj.colour2[None, None] * mix[..., None]
    return inside, colour


def generate_video(
    seed: int,
    height: int = 240,
    width: int = 432,
    frames: int = 24,
    max_objects: int = 5,
    enter_probability: float = 0.3,
    name: str | None = None,
) -> SyntheticVideo:
    """One synthetic VOS video, a pure function of its arguments.

    Args:
        seed: RNG seed.
        height, width: frame size in pixels.
        frames: number of frames T (>= 2).
        max_objects: 1..5 objects are drawn (uniformly up to this).
        enter_probability: chance that one of the objects (never the only one) enters mid-video.
        name: sequence name (default ``synth<seed>``).

    Returns:
        A SyntheticVideo; every object is visible in its first frame.
    """
    if frames < 2 or height < 16 or width < 16 or not 1 <= max_objects <= 5:
        raise InputError(
            f"synthetic video needs frames >= 2, height/width >= 16 and 1 <= max_objects <= 5; "
            f"got frames={frames}, {height}x{width}, max_objects={max_objects}"
        )
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, max_objects + 1))
    late = count > 1 and frames > 4 and rng.random() < enter_probability
    objects = [_make_object(rng, height, width, frames, 0) for _ in range(count - late)]
    if late:
        objects.append(_make_object(rng, height, width, frames,
                                    int(rng.integers(2, max(3, frames // 2)))))
    depth = rng.permutation(len(objects))  # drawing order, back to front
    background = _background(rng, height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    video = np.empty((frames, height, width, 3), np.uint8)
    labels = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        image = background.copy()
        for k in depth:
            drawn = _render(objects[k], t, height, width, yy, xx)
            if drawn is None:
                continue
            inside, colour = drawn
            image[inside] = colour[inside]
            labels[t][inside] = k + 1
        shading = rng.normal(0, 3, image.shape)
        video[t] = (image + shading).clip(0, 255).astype(np.uint8)
    first_frames = {}
    for k in range(len(objects)):
        seen = np.flatnonzero((labels == k + 1).reshape(frames, -1).any(axis=1))
        if seen.size:
            first_frames[k + 1] = int(seen[0])
    labels = _renumber(labels, first_frames)
    first_frames = {new: t for new, (_, t) in
                    enumerate(sorted(first_frames.items(), key=lambda kv: (kv[1], kv[0])), 1)}
    return SyntheticVideo(name or f"synth{seed}", video, labels, first_frames)


def _renumber(labels: np.ndarray, first_frames: dict[int, int]) -> np.ndarray:
    """Ids in order of first appearance (then old id), so frame-0 objects come first; objects
    never visible are dropped."""
    order = sorted(first_frames.items(), key=lambda kv: (kv[1], kv[0]))
    table = np.zeros(256, np.uint8)
    for new, (old, _) in enumerate(order, 1):
        table[old] = new
    return table[labels]


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = VideoFileWriter(path, DAVIS_FPS, "libx264", "yuv420p", "rgb24", {"crf": "18"})
    try:
        for t, frame in enumerate(frames):
            writer.write(frame, t / DAVIS_FPS)
    finally:
        writer.close()


def write_davis_dataset(
    out_dir: str | Path,
    videos: int,
    seed: int,
    height: int = 240,
    width: int = 432,
    frames: int = 24,
    subset: str = "val",
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    video_files: bool = False,
) -> Path:
    """Generate ``videos`` videos (seeds seed, seed+1, ...) into a DAVIS-layout folder.

    Writes ``JPEGImages/480p/<seq>/%05d.jpg``, ``Annotations/480p/<seq>/%05d.png`` (DAVIS palette)
    and ``ImageSets/2017/<subset>.txt`` (appending names not yet listed). Sequence names are
    ``synth<seed>``. ``progress`` wraps the index iterable (e.g. tqdm). ``video_files`` also
    writes each video as ``videos/<seq>.mp4`` (H.264, ``DAVIS_FPS``), for the runtime's video
    input. Returns ``out_dir``.
    """
    root = Path(out_dir)
    names = []
    for i in (progress(range(videos)) if progress else range(videos)):
        video = generate_video(seed + i, height, width, frames)
        for t in range(frames):
            write_frame_jpeg(root / "JPEGImages" / "480p" / video.name / f"{t:05d}.jpg",
                             video.frames[t])
            write_label_png(root / "Annotations" / "480p" / video.name / f"{t:05d}.png",
                            video.labels[t])
        if video_files:
            _write_mp4(root / "videos" / f"{video.name}.mp4", video.frames)
        names.append(video.name)
        logger.debug("wrote %s (%d objects)", video.name, video.num_objects)
    listing = root / "ImageSets" / "2017" / f"{subset}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    existing = listing.read_text().split() if listing.exists() else []
    listing.write_text("".join(f"{n}\n" for n in existing + [n for n in names if n not in existing]))
    return root
