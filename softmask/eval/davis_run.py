"""Score a model on a DAVIS-layout folder: segment every sequence with it, write the masks, and
compute J&F with ``softmask.eval.davis`` (which holds the metrics and needs no model)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from softmask.data.io import list_frames, read_annotation, read_frame, write_label_png
from softmask.eval.davis import evaluate_davis, read_sequence_list
from softmask.model.hodor import HodorModel
from softmask.model.video import segment_video

logger = logging.getLogger(__name__)


def segment_davis(
    model: HodorModel,
    davis_root: str | Path,
    results_dir: str | Path,
    subset: str = "val",
    temporal_window: int = 7,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> Path:
    """Segment each sequence from its first frame's annotation (the semi-supervised protocol);
    write ``<results_dir>/<seq>/<frame>.png``. Returns ``results_dir``."""
    root, out = Path(davis_root), Path(results_dir)
    sequences = read_sequence_list(root, subset)
    for seq in (progress(sequences) if progress else sequences):
        paths = list_frames(root / "JPEGImages" / "480p" / seq)
        frames = np.stack([read_frame(p) for p in paths])
        first = read_annotation(root / "Annotations" / "480p" / seq / f"{paths[0].stem}.png")
        labels = segment_video(model, frames, {0: first},
                               temporal_window=temporal_window)
        for path, frame_labels in zip(paths, labels):
            write_label_png(out / seq / f"{path.stem}.png", np.asarray(frame_labels))
        logger.debug("segmented %s (%d frames)", seq, len(paths))
    return out


def evaluate_model_on_davis(
    model: HodorModel,
    davis_root: str | Path,
    results_dir: str | Path,
    subset: str = "val",
    temporal_window: int = 7,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> dict:
    """``segment_davis`` then ``evaluate_davis``: the J&F dictionary of the model."""
    segment_davis(model, davis_root, results_dir, subset, temporal_window, progress)
    return evaluate_davis(davis_root, results_dir, subset)
