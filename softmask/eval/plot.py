"""Divergence curves of a parity report as one PNG (matplotlib, frame on x).

Panels: label agreement; max score difference; per state tensor the max abs difference (flags:
fraction differing); with ground truth, J and F of each backend. Dashed lines are the tolerances;
a vertical line marks the first divergence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from softmask.eval.parity import ParityReport
from softmask.export.frame_graphs import FLOAT_STATE, NEXT_SUFFIX

# Differences are drawn on a log axis; exact zeros are drawn at this floor.
LOG_FLOOR = 1e-9


def plot_parity(report: ParityReport, path: str | Path) -> Path:
    """Draw ``report``'s curves into ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.frames
    frames = np.array([r.frame for r in rows])
    has_truth = any(r.iou_reference is not None for r in rows)
    panels = 4 if has_truth else 3
    fig, axes = plt.subplots(panels, 1, figsize=(8, 2.3 * panels), sharex=True)
    title = f"{report.reference} vs {report.candidate}"
    if report.candidate_precision:
        title += f" ({report.candidate_precision})"
    axes[0].set_title(title)

    ax = axes[0]
    ax.plot(frames, [r.label_agreement for r in rows], marker=".", label="label agreement")
    ax.axhline(report.min_agreement_required, ls="--", c="grey", lw=1, label="tolerance")
    ax.set_ylabel("agreement")
    ax.legend(loc="lower left", fontsize=8)

    ax = axes[1]
    scores = [np.nan if r.max_abs_score_diff is None else max(r.max_abs_score_diff, LOG_FLOOR)
              for r in rows]
    ax.semilogy(frames, scores, marker=".", label="max |score diff|")
    ax.axhline(report.score_tolerance, ls="--", c="grey", lw=1, label="tolerance")
    ax.set_ylabel("scores")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[2]
    names = next((list(r.state) for r in rows if r.state), [])
    for name in names:
        values = [np.nan if r.state is None else max(r.state[name].max, LOG_FLOOR) for r in rows]
        style = "-" if name[: -len(NEXT_SUFFIX)] in FLOAT_STATE else ":"
        ax.semilogy(frames, values, style, marker=".", label=name)
    if report.state_tolerance is not None:
        ax.axhline(report.state_tolerance, ls="--", c="grey", lw=1, label="descriptor tolerance")
    ax.set_ylabel("state max |diff|")
    ax.legend(loc="upper left", fontsize=7, ncol=3)

    if has_truth:
        ax = axes[3]
        for side, colour in (("reference", "C0"), ("candidate", "C1")):
            name = getattr(report, side)
            ax.plot(frames, [getattr(r, f"iou_{side}") for r in rows], "-", c=colour,
                    label=f"J {name}")
            ax.plot(frames, [getattr(r, f"f_{side}") for r in rows], "--", c=colour,
                    label=f"F {name}")
        ax.set_ylabel("J, F")
        ax.legend(loc="lower left", fontsize=8, ncol=2)

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
