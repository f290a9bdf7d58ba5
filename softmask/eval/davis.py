"""DAVIS 2017 semi-supervised evaluation (region J, contour F, J&F), as the reference evaluation.

Restated from the DAVIS 2017 evaluation protocol (``docs/reference/vos_metrics.md``); the
numbers match the reference implementation (davis2017-evaluation) for the same folders:

- Ground truth ``<root>/Annotations/480p/<seq>/<frame>.png`` (indexed PNG, value = object id,
  255 = void, counted as background); sequences listed in ``<root>/ImageSets/2017/<subset>.txt``.
  Object count = largest id in the first ground-truth frame.
- Results ``<results>/<seq>/<frame>.png``. More predicted objects than ground-truth objects is an
  error; fewer are padded with empty masks.
- Evaluated frames: all but the first and the last of each sequence.
- J = |P & G| / |P | G| (1 when both are empty). F: boundary precision/recall with a tolerance of
  ceil(0.008 * image diagonal) pixels (a disk), F = 2PR / (P + R).
- Per object: mean (nanmean), recall (fraction of frames > 0.5), decay (mean of the first quarter
  of the frames minus that of the last quarter; 4 bins with shared endpoints).
- Every (sequence, object) pair counts once in the global means; J&F = (J-Mean + F-Mean) / 2.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from scipy import ndimage

from softmask.data.io import DAVIS_LABEL_MODES, VOID_LABEL, read_label_png
from softmask.errors import InputError

logger = logging.getLogger(__name__)

BOUNDARY_TOLERANCE = 0.008
GLOBAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def region_similarity(prediction: np.ndarray, truth: np.ndarray) -> float:
    """J of two binary masks [H, W]: |P & G| / |P | G|, 1.0 when both are empty."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    union = np.logical_or(prediction, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, truth).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask [H, W], as the reference ``seg2bmap``.

    A pixel is boundary when it differs from its right, bottom or bottom-right neighbour (outside
    the image counts as 0), except: in the last row only the right neighbour is compared, in the
    last column only the bottom one, and the bottom-right corner pixel is never boundary.
    """
    seg = mask.astype(bool)
    right = np.zeros_like(seg)
    below = np.zeros_like(seg)
    below_right = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below[:-1, :] = seg[1:, :]
    below_right[:-1, :-1] = seg[1:, 1:]
    edges = (seg ^ right) | (seg ^ below) | (seg ^ below_right)
    edges[-1, :] = seg[-1, :] ^ right[-1, :]
    edges[:, -1] = seg[:, -1] ^ below[:, -1]
    edges[-1, -1] = False
    return edges


def boundary_tolerance(height: int, width: int) -> int:
    """Dilation radius in pixels: ceil(0.008 * sqrt(H^2 + W^2)) (8 at 480x854)."""
    # sqrt of the exact integer sum, as the reference's np.linalg.norm (hypot may differ by an ulp).
    return math.ceil(BOUNDARY_TOLERANCE * math.sqrt(height * height + width * width))


def disk(radius: int) -> np.ndarray:
    """Binary disk structuring element [2r+1, 2r+1]: x^2 + y^2 <= r^2."""
    grid = np.arange(-radius, radius + 1)
    return (grid[None, :] ** 2 + grid[:, None] ** 2) <= radius**2


def contour_accuracy(prediction: np.ndarray, truth: np.ndarray) -> float:
    """F of two binary masks [H, W]: boundary F-measure with a disk tolerance.

    Both boundaries empty -> 1; only the prediction's empty -> P=1, R=0 (F=0); only the ground
    truth's empty -> P=0, R=1 (F=0).
    """
    pred_edges, true_edges = boundary_map(prediction), boundary_map(truth)
    structure = disk(boundary_tolerance(*prediction.shape[:2]))
    n_pred, n_true = int(pred_edges.sum()), int(true_edges.sum())
    if n_pred == 0 and n_true == 0:
        return 1.0
    if n_pred == 0 or n_true == 0:
        return 0.0
    pred_near = ndimage.binary_dilation(pred_edges, structure=structure)
    true_near = ndimage.binary_dilation(true_edges, structure=structure)
    precision = np.logical_and(pred_edges, true_near).sum() / n_pred
    recall = np.logical_and(true_edges, pred_near).sum() / n_true
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F values, as the reference.

    Decay: the frames are cut into 4 bins at round(linspace(1, n, 5)) - 1 (bins share their
    endpoints); decay = nanmean(first bin) - nanmean(last bin).
    """
    values = np.asarray(per_frame, dtype=np.float64)
    mean = float(np.nanmean(values)) if values.size else float("nan")
    recall = float(np.nanmean(values > 0.5)) if values.size else float("nan")
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    first = np.nanmean(bins[0]) if bins[0].size else np.nan
    last = np.nanmean(bins[3]) if bins[3].size else np.nan
    return mean, recall, float(first - last)


def _read_mask(path: Path) -> np.ndarray:
    return read_label_png(path, DAVIS_LABEL_MODES, "mask")


def read_sequence_list(davis_root: Path, subset: str) -> list[str]:
    """Sequence names of ``ImageSets/2017/<subset>.txt``."""
    listing = davis_root / "ImageSets" / "2017" / f"{subset}.txt"
    if not listing.is_file():
        raise InputError(f"{listing}: sequence list not found (is {davis_root} a DAVIS root?)")
    return [line.strip() for line in listing.read_text().splitlines() if line.strip()]


def evaluate_sequence(
    truth_dir: Path, results_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame J and F of one sequence: two arrays [objects, evaluated frames].

    Raises:
        InputError: a result PNG is missing or unreadable, or it holds more objects than the
            ground truth.
    """
    frames = sorted(truth_dir.glob("*.png"))
    if not frames:
        raise InputError(f"{truth_dir}: no ground-truth PNGs")
    first = _read_mask(frames[0])
    num_objects = int(np.where(first == VOID_LABEL, 0, first).max())
    evaluated = frames[1:-1]
    j = np.zeros((num_objects, len(evaluated)))
    f = np.zeros((num_objects, len(evaluated)))
    predictions = [_read_mask(results_dir / frame.name) for frame in evaluated]
    predicted_objects = max((int(p.max()) for p in predictions), default=0)
    if predicted_objects > num_objects:
        raise InputError(
            f"{results_dir}: predicted object id {predicted_objects}, but the ground truth of "
            f"{truth_dir.name} has {num_objects} object(s)"
        )
    for t, (frame, prediction) in enumerate(zip(evaluated, predictions)):
        truth = _read_mask(frame)
        if prediction.shape != truth.shape:
            raise InputError(f"{results_dir / frame.name}: shape {prediction.shape}, the ground "
                             f"truth is {truth.shape}")
        truth = np.where(truth == VOID_LABEL, 0, truth)
        for k in range(num_objects):
            j[k, t] = region_similarity(prediction == k + 1, truth == k + 1)
            f[k, t] = contour_accuracy(prediction == k + 1, truth == k + 1)
    return j, f


def evaluate_davis(
    davis_root: str | Path,
    results_dir: str | Path,
    subset: str = "val",
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> dict:
    """Evaluate a results folder against a DAVIS-layout ground truth (semi-supervised protocol).

    Args:
        davis_root: folder with ``Annotations/480p/<seq>/`` and ``ImageSets/2017/<subset>.txt``.
        results_dir: folder with ``<seq>/<frame>.png`` for every evaluated frame.
        subset: the ImageSets list to evaluate.
        progress: optional wrapper of the sequence iterable (e.g. ``tqdm``).

    Returns:
        {'J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay': float,
         'per_object': [{'Sequence': '<seq>_<k>', 'J-Mean': float, 'F-Mean': float}, ...]}
    """
    root, results = Path(davis_root), Path(results_dir)
    sequences = read_sequence_list(root, subset)
    rows = []
    stats = {"J": [], "F": []}
    for seq in (progress(sequences) if progress else sequences):
        j, f = evaluate_sequence(root / "Annotations" / "480p" / seq, results / seq)
        for k in range(j.shape[0]):
            js, fs = statistics(j[k]), statistics(f[k])
            stats["J"].append(js)
            stats["F"].append(fs)
            rows.append({"Sequence": f"{seq}_{k + 1}", "J-Mean": js[0], "F-Mean": fs[0]})
        logger.debug("%s: %d object(s)", seq, j.shape[0])
    if not rows:
        raise InputError(f"{root}: no objects to evaluate in subset {subset!r}")
    j_stats, f_stats = np.array(stats["J"]), np.array(stats["F"])
    j_mean, j_recall, j_decay = (float(np.mean(j_stats[:, i])) for i in range(3))
    f_mean, f_recall, f_decay = (float(np.mean(f_stats[:, i])) for i in range(3))
    return {
        "J&F-Mean": (j_mean + f_mean) / 2,
        "J-Mean": j_mean, "J-Recall": j_recall, "J-Decay": j_decay,
        "F-Mean": f_mean, "F-Recall": f_recall, "F-Decay": f_decay,
        "per_object": rows,
    }


def format_table(results: dict) -> str:
    """The global metrics and the per-object means as a plain-text table."""
    header = " ".join(f"{k:>9}" for k in GLOBAL_KEYS)
    values = " ".join(f"{results[k]:>9.3f}" for k in GLOBAL_KEYS)
    width = max([len("Sequence")] + [len(r["Sequence"]) for r in results["per_object"]])
    lines = [header, values, "", f"{'Sequence':<{width}}  J-Mean  F-Mean"]
    lines += [f"{r['Sequence']:<{width}}  {r['J-Mean']:6.3f}  {r['F-Mean']:6.3f}"
              for r in results["per_object"]]
    return "\n".join(lines)


def write_csv(results: dict, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>`` (global metrics, the reference's global_results CSV) and
    ``<path stem>_per-sequence.csv`` (per-object means). Returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(GLOBAL_KEYS)
        writer.writerow([f"{results[k]:.6f}" for k in GLOBAL_KEYS])
    per_object = path.with_name(f"{path.stem}_per-sequence.csv")
    with per_object.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["Sequence", "J-Mean", "F-Mean"])
        for row in results["per_object"]:
            writer.writerow([row["Sequence"], f"{row['J-Mean']:.6f}", f"{row['F-Mean']:.6f}"])
    return path, per_object


def mean_region_similarity(prediction: np.ndarray, truth: np.ndarray, num_objects: int) -> float:
    """Mean J over objects 1..num_objects of one frame's uint8 label maps [H, W]
    (``VOID_LABEL`` in ``truth`` counts as background; an object absent from both scores 1)."""
    truth = np.where(truth == VOID_LABEL, 0, truth)
    if num_objects < 1:
        return 1.0
    return float(np.mean([region_similarity(prediction == k, truth == k)
                          for k in range(1, num_objects + 1)]))


def frame_j_and_f(prediction: np.ndarray, truth: np.ndarray, num_objects: int) -> tuple[float, float]:
    """(mean J, mean F) over objects 1..num_objects of one frame (as ``mean_region_similarity``)."""
    truth = np.where(truth == VOID_LABEL, 0, truth)
    if num_objects < 1:
        return 1.0, 1.0
    f = [contour_accuracy(prediction == k, truth == k) for k in range(1, num_objects + 1)]
    return mean_region_similarity(prediction, truth, num_objects), float(np.mean(f))
