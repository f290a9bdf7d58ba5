"""Divergence between two runs of one video, frame by frame: what is compared, against which
tolerance, when it first goes over, and whether it grows.

Quantities of one frame, in the order they are checked:

| quantity | value | over tolerance when |
| --- | --- | --- |
| ``labels`` | fraction of pixels whose labels agree | value < ``min_agreement`` |
| ``scores`` | max abs difference of the per-object scores | value > ``score`` |
| ``fg_next``, ``bg_next`` | max abs difference of the descriptors valid in either run | value > ``state`` |
| ``fg_valid_next``, ``bg_valid_next``, ``active_next`` | fraction of flags that differ | value > 0 |

Descriptors of slots that are invalid in both runs are never read by the model, so they are not
compared. ``drift`` fits a line to the per-frame mean descriptor difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from softmask.export.spec import FLOAT_STATE, NEXT_SUFFIX, STATE_NAMES

LABELS = "labels"
SCORES = "scores"
# A fitted rise over the video larger than this fraction of the mean difference is "growing".
DRIFT_GROWTH = 0.5
DRIFT_MIN_FRAMES = 3


@dataclass(frozen=True)
class Tolerances:
    """What counts as a divergence.

    min_agreement: fraction of pixels whose labels must agree, per frame.
    score: largest allowed |score difference| (scores are probabilities in [0, 1]).
    state: largest allowed |descriptor difference| (descriptors are LayerNorm outputs, O(1)).
    module: largest allowed difference of a module's output relative to the reference output's
        largest magnitude, when localising.
    """

    min_agreement: float = 0.999
    score: float = 1e-4
    state: float = 1e-3
    module: float = 1e-3

    @classmethod
    def for_precision(cls, precision: str) -> Tolerances:
        """Defaults for a candidate of this precision: fp32 as the class defaults; fp16 (about 3
        decimal digits per value) 99 % agreement, 1e-2 scores, 5e-2 descriptors, 1e-2 modules."""
        if precision == "fp16":
            return cls(min_agreement=0.99, score=1e-2, state=5e-2, module=1e-2)
        return cls()

    def replace(self, **overrides: float | None) -> Tolerances:
        """A copy with the given (non-None) fields changed."""
        values = asdict(self)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Tolerances(**values)


@dataclass(frozen=True)
class StateDiff:
    """One state tensor: max and mean abs difference (flags: 1/0 and the fraction differing)."""

    max: float
    mean: float


@dataclass(frozen=True)
class Divergence:
    """A quantity over tolerance at a frame; ``graph`` is the graph that frame ran."""

    frame: int
    graph: str
    quantity: str
    value: float
    tolerance: float


def _valid_mask(name: str, ref: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray]):
    """[..., 1] mask of descriptor rows valid in either run, or None if no flags are given."""
    flags = f"{name}_valid"
    if flags not in ref or flags not in cand:
        return None
    return (np.asarray(ref[flags], bool) | np.asarray(cand[flags], bool))[..., None]


def state_differences(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]
) -> dict[str, StateDiff]:
    """Per state tensor (keys ``<name>_next``), the difference between two states keyed by
    ``STATE_NAMES`` (descriptors compared in float64 where valid in either run)."""
    diffs = {}
    for name in STATE_NAMES:
        ref, cand = np.asarray(reference[name]), np.asarray(candidate[name])
        if name in FLOAT_STATE:
            delta = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
            delta = np.where(np.isnan(delta), np.inf, delta)
            mask = _valid_mask(name, reference, candidate)
            if mask is not None:
                delta = np.where(mask, delta, 0.0)
                count = int(mask.sum()) * ref.shape[-1]
            else:
                count = delta.size
            total = float(delta.sum())
            diffs[name + NEXT_SUFFIX] = StateDiff(
                float(delta.max(initial=0.0)), total / count if count else 0.0
            )
        else:
            differ = np.asarray(ref, bool) != np.asarray(cand, bool)
            diffs[name + NEXT_SUFFIX] = StateDiff(float(differ.any()), float(differ.mean()))
    return diffs


def score_difference(reference: np.ndarray | None, candidate: np.ndarray | None) -> float | None:
    """Max abs difference of two [N, H, W] score arrays (NaN counts as infinite), or None."""
    if reference is None or candidate is None:
        return None
    n = min(reference.shape[0], candidate.shape[0])
    delta = np.abs(reference[:n].astype(np.float64) - candidate[:n].astype(np.float64))
    return float(np.where(np.isnan(delta), np.inf, delta).max(initial=0.0))


def over_tolerance(
    frame: int,
    graph: str,
    agreement: float,
    score_diff: float | None,
    state_diffs: Mapping[str, StateDiff] | None,
    tolerances: Tolerances,
) -> list[Divergence]:
    """Every quantity of one frame over its tolerance, in checking order (module docstring)."""
    found = []
    if agreement < tolerances.min_agreement:
        found.append(Divergence(frame, graph, LABELS, agreement, tolerances.min_agreement))
    if score_diff is not None and score_diff > tolerances.score:
        found.append(Divergence(frame, graph, SCORES, score_diff, tolerances.score))
    for name, diff in (state_diffs or {}).items():
        limit = tolerances.state if name[: -len(NEXT_SUFFIX)] in FLOAT_STATE else 0.0
        if diff.max > limit:
            found.append(Divergence(frame, graph, name, diff.max, limit))
    return found


def describe(divergence: Divergence) -> str:
    """One line, e.g. "frame 12: labels agree on 0.98 of pixels < 0.999"."""
    d = divergence
    where = f"frame {d.frame}"
    if d.quantity == LABELS:
        return f"{where}: labels agree on {d.value:.6f} of pixels < {d.tolerance}"
    if d.quantity == SCORES:
        return f"{where}: max |score difference| {d.value:.3g} > {d.tolerance}"
    if d.quantity[: -len(NEXT_SUFFIX)] in FLOAT_STATE:
        return f"{where}: max |{d.quantity} difference| {d.value:.3g} > {d.tolerance}"
    return f"{where}: {d.quantity} flags differ ({d.value:.3g} of them)"


def descriptor_mean_difference(state_diffs: Mapping[str, StateDiff]) -> float:
    """Mean abs difference over both descriptor tensors (fg_next, bg_next), equally weighted."""
    values = [state_diffs[n + NEXT_SUFFIX].mean for n in FLOAT_STATE if n + NEXT_SUFFIX in state_diffs]
    return float(np.mean(values)) if values else 0.0


def drift(frames: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    """Whether a per-frame difference grows over the video: a least-squares line through
    (frame, value).

    Returns {"quantity", "frames", "slope_per_frame", "start", "end", "trend"}; start and end
    are the fitted values at the first and last frame; trend is "none" (no difference at all),
    "too short" (fewer than 3 frames), "growing" (the fitted rise over the video exceeds half the
    mean value), "shrinking" (the same fall) or "flat".
    """
    x = np.asarray(frames, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y)
    x, y = x[finite], y[finite]
    result: dict[str, Any] = {
        "quantity": "mean |descriptor difference| (fg_next, bg_next)",
        "frames": int(x.size),
        "slope_per_frame": None,
        "start": None,
        "end": None,
        "trend": "too short",
    }
    if x.size and not y.any():
        result.update(slope_per_frame=0.0, start=0.0, end=0.0, trend="none")
        return result
    if x.size < DRIFT_MIN_FRAMES:
        return result
    slope, intercept = np.polyfit(x, y, 1)
    start, end = intercept + slope * x[0], intercept + slope * x[-1]
    rise = end - start
    if rise > DRIFT_GROWTH * y.mean():
        trend = "growing"
    elif -rise > DRIFT_GROWTH * y.mean():
        trend = "shrinking"
    else:
        trend = "flat"
    result.update(slope_per_frame=float(slope), start=float(start), end=float(end), trend=trend)
    return result


@dataclass
class DivergenceContext:
    """What the first diverging frame needs to be re-run: its index, graph, inputs, the state
    each backend went in with, and the reference's outputs."""

    divergence: Divergence
    frame: np.ndarray
    annotation: np.ndarray | None
    reference_state_in: dict[str, np.ndarray]
    candidate_state_in: dict[str, np.ndarray]
    reference_labels: np.ndarray
    reference_scores: np.ndarray | None
    reference_state_out: dict[str, np.ndarray]
