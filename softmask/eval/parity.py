"""Accuracy parity between two runtime backends on the same video.

Both backends see the same frames and annotations in order (each through its own
``VideoStream``). Per frame: the fraction of pixels whose labels agree, and the largest absolute
difference of the per-object scores (the values the final argmax compares). With ground truth,
each backend is also scored against it (mean per-object IoU, J, per frame and overall).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from softmask.errors import InputError
from softmask.runtime.backend import Backend
from softmask.runtime.stream import VideoStream

logger = logging.getLogger(__name__)

# Defaults for fp32 exports on the same kind of device: label flips only where two objects'
# scores tie to within float32 rounding, and scores as close as float32 summation order allows.
DEFAULT_MIN_AGREEMENT = 0.999
DEFAULT_SCORE_TOLERANCE = 1e-4
# DAVIS ground truth marks unlabelled pixels 255 ("void"); semi-supervised evaluation treats them
# as background.
VOID_LABEL = 255


def mean_iou(prediction: np.ndarray, truth: np.ndarray, num_objects: int) -> float:
    """Mean over objects 1..num_objects of |P & G| / |P | G| (1 where both are empty), for uint8
    label maps [H, W]; ``VOID_LABEL`` in ``truth`` counts as background."""
    truth = np.where(truth == VOID_LABEL, 0, truth)
    scores = []
    for obj in range(1, num_objects + 1):
        pred_mask, true_mask = prediction == obj, truth == obj
        union = np.logical_or(pred_mask, true_mask).sum()
        scores.append(1.0 if union == 0 else np.logical_and(pred_mask, true_mask).sum() / union)
    return float(np.mean(scores)) if scores else 1.0


@dataclass
class FrameParity:
    """One frame: which graph ran, label agreement (fraction of pixels), score difference (None if
    a backend gave no scores), and each backend's mean IoU with the ground truth (if given)."""

    frame: int
    graph: str
    label_agreement: float
    max_abs_score_diff: float | None
    iou_reference: float | None = None
    iou_candidate: float | None = None


@dataclass
class ParityReport:
    """Per-frame results, summary, the tolerances used and what failed (empty when it passed)."""

    reference: str
    candidate: str
    frames: list[FrameParity]
    min_agreement: float
    max_abs_score_diff: float | None
    min_agreement_required: float
    score_tolerance: float
    failures: list[str] = field(default_factory=list)
    mean_iou_reference: float | None = None
    mean_iou_candidate: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def save(self, path: str | Path) -> None:
        """Write the report as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def compare_backends(
    reference: Backend,
    candidate: Backend,
    frames: Sequence[np.ndarray],
    annotations: Mapping[int, np.ndarray],
    ground_truth: Mapping[int, np.ndarray] | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    score_tolerance: float = DEFAULT_SCORE_TOLERANCE,
) -> ParityReport:
    """Run one video through both backends and compare them frame by frame.

    Args:
        reference, candidate: backends built for the frames' size (create them with
            ``with_scores=True`` to compare scores).
        frames: uint8 [H, W, 3] frames in order.
        annotations: frame index -> uint8 label map [H, W].
        ground_truth: frame index -> uint8 label map (255 = void) to score both against; objects
            1..(largest id in any ground-truth map) are scored.
        min_agreement: a frame fails if fewer pixels than this fraction agree.
        score_tolerance: a frame fails if any score differs by more.

    Returns:
        The report; ``failures`` names each failing frame, the check and by how much.
    """
    if (reference.spec.height, reference.spec.width) != (
        candidate.spec.height,
        candidate.spec.width,
    ):
        raise InputError(
            f"backends built for different frame sizes: {reference.name} "
            f"{reference.spec.height}x{reference.spec.width}, {candidate.name} "
            f"{candidate.spec.height}x{candidate.spec.width}"
        )
    gt_objects = 0
    if ground_truth:
        gt_objects = max(int(np.where(g == VOID_LABEL, 0, g).max()) for g in ground_truth.values())
    streams = VideoStream(reference), VideoStream(candidate)
    results: list[FrameParity] = []
    failures: list[str] = []
    for index, frame in enumerate(frames):
        ann = annotations.get(index)
        ref = streams[0].process(frame, ann, source=f"frame {index}")
        cand = streams[1].process(frame, ann, source=f"frame {index}")
        agreement = float((ref.labels == cand.labels).mean())
        diff = None
        if ref.scores is not None and cand.scores is not None:
            n = min(ref.scores.shape[0], cand.scores.shape[0])
            diff = float(np.abs(ref.scores[:n] - cand.scores[:n]).max(initial=0.0))
        row = FrameParity(index, streams[0].last_graph, agreement, diff)
        if ground_truth is not None and index in ground_truth:
            row.iou_reference = mean_iou(ref.labels, ground_truth[index], gt_objects)
            row.iou_candidate = mean_iou(cand.labels, ground_truth[index], gt_objects)
        if agreement < min_agreement:
            failures.append(
                f"frame {index}: labels agree on {agreement:.6f} of pixels < {min_agreement}"
            )
        if diff is not None and diff > score_tolerance:
            failures.append(f"frame {index}: max |score difference| {diff:.3g} > {score_tolerance}")
        results.append(row)
    diffs = [r.max_abs_score_diff for r in results if r.max_abs_score_diff is not None]

    def _mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    report = ParityReport(
        reference=reference.name,
        candidate=candidate.name,
        frames=results,
        min_agreement=min((r.label_agreement for r in results), default=1.0),
        max_abs_score_diff=max(diffs) if diffs else None,
        min_agreement_required=min_agreement,
        score_tolerance=score_tolerance,
        failures=failures,
        mean_iou_reference=_mean(r.iou_reference for r in results),
        mean_iou_candidate=_mean(r.iou_candidate for r in results),
    )
    for failure in failures:
        logger.warning("parity %s vs %s: %s", reference.name, candidate.name, failure)
    return report


def parity_video(
    video_dir: str | Path,
    annotations_dir: str | Path,
    reference: str = "torch",
    candidate: str = "onnxruntime",
    checkpoint: Any = None,
    export_dir: str | Path | None = None,
    ground_truth_dir: str | Path | None = None,
    num_objects: int | None = None,
    temporal_window: int = 7,
    providers: Sequence[str] | None = None,
    engine_cache_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    score_tolerance: float = DEFAULT_SCORE_TOLERANCE,
) -> ParityReport:
    """``compare_backends`` on a video folder (the layout of ``softmask.runtime.run_video``).

    The torch backend uses ``checkpoint`` (a path, a HodorModel, or None for the bundled model).
    Exported backends use ``export_dir``, or graphs exported from the same model into
    ``work_dir`` (required then) at the video's size with ``num_objects`` slots (default: the
    largest annotated id) and ``temporal_window``; with ``export_dir`` the torch backend takes the
    export's settings so both run the same configuration. ``ground_truth_dir`` holds label PNGs
    named like frames.
    """
    from softmask.data.io import list_frames, read_annotations, read_frame
    from softmask.export.frame_graphs import StreamSpec
    from softmask.export.streaming import export_streaming, load_streaming_export
    from softmask.runtime.factory import create_backend, resolve_model

    paths = list_frames(video_dir)
    frames = [read_frame(p) for p in paths]
    annotations = read_annotations(annotations_dir, paths)
    truth = read_annotations(ground_truth_dir, paths) if ground_truth_dir is not None else None
    height, width, _ = frames[0].shape
    slots = num_objects or max(int(a.max()) for a in annotations.values())
    model = None
    export = None
    if export_dir is not None:
        export = load_streaming_export(export_dir)
        spec = export.spec
    else:
        spec = StreamSpec(height, width, slots, temporal_window)
    if "torch" in (reference, candidate) or export is None:
        model = resolve_model(checkpoint)
    if export is None and {reference, candidate} - {"torch"}:
        if work_dir is None:
            raise InputError("parity_video needs export_dir or work_dir (to export the graphs)")
        export = export_streaming(model, work_dir, height, width, slots, temporal_window)
    backends = [
        create_backend(
            name,
            model=model,
            export=export,
            spec=spec,
            with_scores=True,
            providers=providers,
            engine_cache_dir=engine_cache_dir,
        )
        for name in (reference, candidate)
    ]
    return compare_backends(*backends, frames, annotations, truth, min_agreement, score_tolerance)
