"""Divergence curves of a parity report as one PNG (matplotlib, frame on x).

Panels: label agreement; max score difference; the max abs difference of each descriptor tensor
of the state (log axes; open circles on the floor: exactly equal), with crosses where a flag
tensor differs; with ground truth, J and F of each backend. Dashed lines are the tolerances; a
red vertical line marks the first divergence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from softmask.eval.parity import ParityReport
from softmask.export.spec import FLOAT_STATE, NEXT_SUFFIX


def _log_curve(ax, frames, values, label: str, colour: str) -> None:
    """A difference curve on a log axis; frames with no difference (0) are drawn as open markers
    on the axis floor, frames with no value (None) are left out."""
    values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    positive = values[values > 0]
    floor = positive.min() / 10 if positive.size else 1e-12
    ax.set_yscale("log")
    ax.plot(frames, np.where(values > 0, values, np.nan), marker=".", c=colour, label=label)
    zero = values == 0
    if zero.any():
        ax.plot(frames[zero], np.full(zero.sum(), floor), "o", mfc="none", c=colour, ms=4)


def plot_parity(report: ParityReport, path: str | Path) -> Path:
    """Draw ``report``'s curves into ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.frames
    frames = np.array([r.frame for r in rows])
    has_truth = any(r.iou_reference is not None for r in rows)
    panels = 4 if has_truth else 3
    fig, axes = plt.subplots(panels, 1, figsize=(9, 2.2 * panels), sharex=True)
    title = f"{report.reference} vs {report.candidate}"
    if report.candidate_precision:
        title += f" ({report.candidate_precision})"
    axes[0].set_title(title)
    legend = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8}

    ax = axes[0]
    ax.plot(frames, [r.label_agreement for r in rows], marker=".", label="label agreement")
    ax.axhline(report.min_agreement_required, ls="--", c="grey", lw=1, label="tolerance")
    ax.set_ylabel("agreement")
    ax.legend(**legend)

    ax = axes[1]
    _log_curve(ax, frames, [r.max_abs_score_diff for r in rows], "max |score diff|", "C0")
    ax.axhline(report.score_tolerance, ls="--", c="grey", lw=1, label="tolerance")
    ax.set_ylabel("scores")
    ax.legend(**legend)

    ax = axes[2]
    names = next((list(r.state) for r in rows if r.state), [])
    for i, name in enumerate(n for n in names if n[: -len(NEXT_SUFFIX)] in FLOAT_STATE):
        _log_curve(ax, frames, [None if r.state is None else r.state[name].max for r in rows],
                   f"{name} max |diff|", f"C{i}")
    if report.state_tolerance is not None:
        ax.axhline(report.state_tolerance, ls="--", c="grey", lw=1, label="tolerance")
    flags = [n for n in names if n[: -len(NEXT_SUFFIX)] not in FLOAT_STATE]
    for i, name in enumerate(flags):
        differ = [r.frame for r in rows if r.state is not None and r.state[name].max > 0]
        if differ:
            ax.plot(differ, [ax.get_ylim()[1]] * len(differ), "x", c=f"C{3 + i}",
                    label=f"{name} differs")
    ax.set_ylabel("state")
    ax.legend(**legend)

    if has_truth:
        ax = axes[3]
        for side, colour in (("reference", "C0"), ("candidate", "C1")):
            name = getattr(report, side)
            ax.plot(frames, [getattr(r, f"iou_{side}") for r in rows], "-", c=colour,
                    label=f"J {name}")
            ax.plot(frames, [getattr(r, f"f_{side}") for r in rows], "--", c=colour,
                    label=f"F {name}")
        ax.set_ylabel("J, F")
        ax.legend(**legend)

    if report.first_divergence is not None:
        for ax in axes:
            ax.axvline(report.first_divergence.frame, c="red", lw=1, alpha=0.6)
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
