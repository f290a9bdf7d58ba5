"""Per-frame latency statistics for the run report."""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 99)


def latency_summary(seconds: list[float]) -> dict[str, float | int | None]:
    """Summary of per-frame wall times (seconds) in milliseconds.

    Percentiles interpolate linearly between the closest ranks (numpy's default). ``fps`` is frames
    per second of the timed work alone (frames / summed time). Empty input gives None values.
    """
    if not seconds:
        return {
            "count": 0,
            "mean_ms": None,
            "max_ms": None,
            "fps": None,
            **{f"p{p}_ms": None for p in PERCENTILES},
        }
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    summary: dict[str, float | int | None] = {"count": int(ms.size)}
    for p in PERCENTILES:
        summary[f"p{p}_ms"] = float(np.percentile(ms, p))
    summary["mean_ms"] = float(ms.mean())
    summary["max_ms"] = float(ms.max())
    total = float(ms.sum()) / 1e3
    summary["fps"] = ms.size / total if total > 0 else None
    return summary
