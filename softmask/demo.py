"""The demo: the bundled tiny HODOR model segments the embedded default video in PyTorch and in
ONNX Runtime (through the exported per-frame graphs with the custom SoftMaskedAttention node),
with per-frame latency, backend parity and DAVIS J&F against the video's ground truth.

``run_op_demo`` is the op-level check: a two-layer soft-masked attention module exported to ONNX
and compared with PyTorch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from softmask.data.io import read_label_png, write_label_png
from softmask.data.synthetic import SyntheticVideo, generate_video
from softmask.eval.davis import evaluate_davis
from softmask.export import export_onnx
from softmask.ops import SoftMaskedAttention

logger = logging.getLogger(__name__)

# The embedded default video: synthetic, regenerated bit-identically from this seed (held out
# from training: training seeds start at softmask.train.trainer.TRAIN_SEED_BASE).
DEMO_SEED = 424242
DEMO_SIZE = (240, 432)
DEMO_FRAMES = 24
# The bundled model was trained on 128-pixel-high frames: the graphs resize to that and back.
DEMO_MIN_DIM = 128
DEMO_BACKENDS = ("torch", "onnxruntime")


def default_video() -> SyntheticVideo:
    """The demo's video: 24 frames of 240x432, objects moving and occluding, one may enter late."""
    return generate_video(DEMO_SEED, *DEMO_SIZE, DEMO_FRAMES, name="demo")


@dataclass(frozen=True)
class BackendResult:
    """One backend's run of the demo video."""

    backend: str
    report: dict
    scores: dict


def _write_ground_truth(video: SyntheticVideo, root: Path) -> Path:
    for t, labels in enumerate(video.labels):
        write_label_png(root / "Annotations" / "480p" / video.name / f"{t:05d}.png", labels)
    listing = root / "ImageSets" / "2017" / "val.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(f"{video.name}\n")
    return root


def run_video_demo(out_dir: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Segment the default video with each backend of ``DEMO_BACKENDS``; score and compare them.

    Writes ``<out_dir>/<backend>/masks/*.png``, ``overlay/*.jpg`` and ``report.json``, and the
    video's ground truth under ``<out_dir>/ground_truth`` (DAVIS layout).

    Returns:
        {"video": name, "objects": N, "first_frames": {...}, "backends": [BackendResult...],
         "label_agreement": fraction of pixels where the two backends' labels agree}
    """
    from softmask.runtime.outputs import MASKS_DIR
    from softmask.runtime.pipeline import run_video

    out = Path(out_dir)
    video = default_video()
    truth_root = _write_ground_truth(video, out / "ground_truth")
    annotations = video.annotations()
    results = []
    for backend in DEMO_BACKENDS:
        run_dir = out / backend
        report = run_video(list(video.frames), annotations, run_dir, backend=backend,
                           checkpoint=checkpoint, min_dim=DEMO_MIN_DIM, overlay=True,
                           overwrite=True)
        # DAVIS scoring reads <results>/<sequence>/<frame>.png.
        results_root = run_dir / "davis_results"
        (results_root / video.name).mkdir(parents=True, exist_ok=True)
        for png in sorted((run_dir / MASKS_DIR).glob("*.png")):
            target = results_root / video.name / png.name
            target.write_bytes(png.read_bytes())
        scores = evaluate_davis(truth_root, results_root)
        results.append(BackendResult(backend, report, scores))
    masks = [
        np.stack([read_label_png(p) for p in sorted((out / b / MASKS_DIR).glob("*.png"))])
        for b in DEMO_BACKENDS
    ]
    return {
        "video": video.name,
        "objects": video.num_objects,
        "first_frames": video.first_frames,
        "backends": results,
        "label_agreement": float((masks[0] == masks[1]).mean()),
    }


class TwoLayerSoftMaskedAttention(nn.Module):
    """Descriptors attending twice to a feature map under soft masks (HODOR's encoder pattern).

    forward(queries [B, I, E], pixels [B, S, E], mask [B, I, S]) -> [B, I, E]
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8) -> None:
        super().__init__()
        self.layers = nn.ModuleList(SoftMaskedAttention(embed_dim, num_heads) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in range(2))

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for attn, norm in zip(self.layers, self.norms):
            queries = norm(queries + attn(queries, pixels, pixels, mask))
        return queries


@dataclass(frozen=True)
class ParityRow:
    """One input size of the op demo: max abs error of ONNX Runtime vs PyTorch, latencies (ms)."""

    batch: int
    queries: int
    keys: int
    max_abs_error: float
    torch_ms: float
    onnxruntime_ms: float


def _inputs(batch: int, queries: int, keys: int, embed: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, queries, embed, generator=g),
            torch.randn(batch, keys, embed, generator=g),
            torch.rand(batch, queries, keys, generator=g))


def _best_ms(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def run_op_demo(
    out_dir: str | Path,
    sizes: tuple[tuple[int, int, int], ...] = ((1, 12, 6420), (2, 40, 1500), (1, 1, 1)),
    seed: int = 0,
) -> tuple[Path, list[ParityRow]]:
    """Export the two-layer module (B, I, S dynamic), run it in ONNX Runtime, compare.

    Args:
        out_dir: folder for ``two_layer_sma.onnx``.
        sizes: (batch, queries, keys) to run through the one exported model.

    Returns:
        The ONNX path and one ParityRow per size.
    """
    import onnxruntime as ort

    torch.manual_seed(seed)
    module = TwoLayerSoftMaskedAttention().eval()
    batch, queries, keys = Dim("batch"), Dim("queries"), Dim("keys")
    path = export_onnx(
        module,
        _inputs(2, 5, 64, 256, seed),
        Path(out_dir) / "two_layer_sma.onnx",
        dynamic_shapes=({0: batch, 1: queries}, {0: batch, 1: keys},
                        {0: batch, 1: queries, 2: keys}),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = []
    for b, i, s in sizes:
        inputs = _inputs(b, i, s, 256, seed + s)
        feed = {x.name: t.numpy() for x, t in zip(session.get_inputs(), inputs)}
        with torch.no_grad():
            want = module(*inputs).numpy()
            torch_ms = _best_ms(lambda args=inputs: module(*args))
        got = session.run(None, feed)[0]
        ort_ms = _best_ms(lambda args=feed: session.run(None, args))
        rows.append(ParityRow(b, i, s, float(np.abs(got - want).max()), torch_ms, ort_ms))
        logger.info("B=%d I=%d S=%d: max abs error %.2e", b, i, s, rows[-1].max_abs_error)
    return path, rows
