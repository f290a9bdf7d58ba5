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


# Frames whose durations are kept exactly (percentiles computed from every value); about 55
# minutes at 30 frames/s, 10.4 MB for the pipeline's 13 columns of float64.
EXACT_FRAMES = 100_000
# Beyond EXACT_FRAMES, each column is a histogram of log-spaced bins from 0.1 us to 10^4 s:
# BINS_PER_DECADE bins per factor of 10, so an estimated percentile is within half a bin
# (10^(1/400) - 1, under 0.6 %) of a value the column holds near that rank.
BINS_PER_DECADE = 200
_LOG_LOW, _LOG_HIGH = -7, 4
_BLOCK = 4096


class FrameTable:
    """Per-frame durations (seconds) of named columns in bounded memory.

    Up to ``exact_frames`` rows (checked per block of 4096, so up to 4095 more) every value is
    kept and summaries are exact (``stage_summary``); past that the values move into one
    log-spaced histogram per column and the percentiles are estimates (``exact`` False; mean and
    max stay exact). Memory is at most ``(exact_frames + 4096) x columns x 8`` bytes, whatever
    the number of frames. A NaN means "no value
    for this frame" (e.g. a frame that ran no graph) and is left out of that column.
    """

    def __init__(self, columns: Sequence[str], exact_frames: int = EXACT_FRAMES) -> None:
        self.columns = tuple(columns)
        self.exact_frames = exact_frames
        self.frames = 0
        self._block = np.empty((_BLOCK, len(self.columns)))
        self._filled = 0
        self._exact: list[np.ndarray] | None = []  # None once past exact_frames
        bins = (_LOG_HIGH - _LOG_LOW) * BINS_PER_DECADE + 2  # + below-range and zero bin, top
        self._hist = np.zeros((len(self.columns), bins), np.int64)
        self._count = np.zeros(len(self.columns), np.int64)
        self._sum = np.zeros(len(self.columns))
        self._max = np.full(len(self.columns), -np.inf)

    @property
    def exact(self) -> bool:
        """Whether summaries are exact (at most ``exact_frames`` rows so far)."""
        return self._exact is not None

    def add(self, row: Sequence[float]) -> None:
        """Append one frame's values, in ``columns`` order (NaN: none)."""
        self._block[self._filled] = row
        self._filled += 1
        self.frames += 1
        if self._filled == _BLOCK:
            self._flush()

    def _flush(self) -> None:
        block = self._block[: self._filled].copy()
        self._filled = 0
        if self._exact is not None:
            self._exact.append(block)
            if self.frames <= self.exact_frames:
                return
            block = np.concatenate(self._exact)
            self._exact = None
        for column in range(block.shape[1]):
            values = block[:, column]
            values = values[~np.isnan(values)]
            if not values.size:
                continue
            self._count[column] += values.size
            self._sum[column] += values.sum()
            self._max[column] = max(self._max[column], values.max())
            self._hist[column] += np.bincount(_bin(values), minlength=self._hist.shape[1])

    def values(self, column: str) -> np.ndarray | None:
        """Every value of ``column`` (NaNs left out), or None past ``exact_frames``."""
        if self._exact is None:
            return None
        rows = np.concatenate([*self._exact, self._block[: self._filled]])
        values = rows[:, self.columns.index(column)]
        return values[~np.isnan(values)]

    def summary(self, column: str) -> dict[str, float | int | None]:
        """``stage_summary`` of ``column``: exact up to ``exact_frames``, estimated beyond."""
        values = self.values(column)
        if values is not None:
            return stage_summary(values)
        if self._filled:
            self._flush()
        index = self.columns.index(column)
        count = int(self._count[index])
        if not count:
            return stage_summary([])
        summary: dict[str, float | int | None] = {"count": count}
        cumulative = np.cumsum(self._hist[index])
        for p in PERCENTILES:
            rank = p / 100 * (count - 1)  # numpy's linear rank, to the nearest bin
            summary[f"p{p}_ms"] = float(_bin_value(int(np.searchsorted(cumulative, rank,
                                                                       side="right"))) * 1e3)
        summary["mean_ms"] = float(self._sum[index] / count * 1e3)
        summary["max_ms"] = float(self._max[index] * 1e3)
        return summary


def _bin(seconds: np.ndarray) -> np.ndarray:
    """Histogram bin of each duration: 0 for <= 10^_LOG_LOW s (zero included), then
    BINS_PER_DECADE per decade, the last bin for everything from 10^_LOG_HIGH s."""
    bins = np.zeros(seconds.shape, np.int64)
    positive = seconds > 0
    bins[positive] = np.floor(
        (np.log10(seconds[positive]) - _LOG_LOW) * BINS_PER_DECADE
    ).astype(np.int64) + 1
    return np.clip(bins, 0, (_LOG_HIGH - _LOG_LOW) * BINS_PER_DECADE + 1)


def _bin_value(bin_index: int) -> float:
    """A duration (seconds) standing for a bin: its geometric middle (0 for the lowest)."""
    if bin_index <= 0:
        return 0.0
    return 10.0 ** (_LOG_LOW + (bin_index - 0.5) / BINS_PER_DECADE)


def model_latency(table: FrameTable) -> dict[str, float | int | None]:
    """``latency_summary`` of ``table``'s ``model`` column (frames that ran a graph); its
    ``fps`` is exact in both of ``FrameTable``'s modes (frames / summed time)."""
    values = table.values("model")
    if values is not None:
        return latency_summary(values)
    summary = table.summary("model")
    total = (summary["mean_ms"] or 0.0) * summary["count"] / 1e3
    summary["fps"] = summary["count"] / total if total > 0 else None
    return summary
