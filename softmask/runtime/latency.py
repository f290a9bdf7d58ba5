"""Latency statistics for run reports and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def stage_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """``count`` and, in milliseconds, ``p50_ms``/``p90_ms``/``p99_ms`` (linear interpolation
    between the closest ranks, numpy's default), ``mean_ms`` and ``max_ms`` of durations given in
    seconds. Empty input gives None values."""
    summary: dict[str, float | int | None] = {"count": len(seconds)}
    if not len(seconds):
        summary.update({f"p{p}_ms": None for p in PERCENTILES}, mean_ms=None, max_ms=None)
        return summary
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    for p in PERCENTILES:
        summary[f"p{p}_ms"] = float(np.percentile(ms, p))
    summary["mean_ms"] = float(ms.mean())
    summary["max_ms"] = float(ms.max())
    return summary


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """``stage_summary`` plus ``fps``: frames per second of the timed work alone (frames /
    summed time; None when empty)."""
    summary = stage_summary(seconds)
    total = float(np.sum(seconds)) if len(seconds) else 0.0
    summary["fps"] = len(seconds) / total if total > 0 else None
    return summary
