"""What every command shares: the parser class (one-line errors), the flag value converters and
the progress bars (tqdm on stderr, silent with -q)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from softmask.export.spec import SHARED_GRAPHS

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) that name the command, e.g.
    ``softmask run: error: argument --min-dim: must be a positive integer, got 0``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def finite_positive_float(text: str) -> float:
    value = positive_float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0..65535 (0 picks a free one), got "
                                         f"{value}")
    return value


def bar(args: argparse.Namespace, **kwargs: Any):
    """A tqdm progress bar on stderr, silent with -q."""
    from tqdm import tqdm

    return tqdm(disable=args.quiet, dynamic_ncols=True, **kwargs)


class ExportProgress:
    """Export progress on stderr: one line when exporting starts, then a bar over the graphs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._bar = None

    def __call__(self, graph: str) -> None:
        if self._bar is None:
            self._bar = bar(self._args, total=len(SHARED_GRAPHS), desc="exporting graphs",
                            unit="graph")
        else:
            self._bar.update(1)
        self._bar.set_postfix_str(graph)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.close()


class RunProgress:
    """The pipeline's progress bar (frames/s; processed and dropped frames in live mode), opened
    at the first frame so that setup (export) time does not count in its rate."""

    def __init__(self, args: argparse.Namespace, total: int | None) -> None:
        self._args, self._total = args, total
        self._bar = None

    def __call__(self, processed: int, decoded: int, dropped: int) -> None:
        if self._bar is None:
            self._bar = bar(self._args, total=self._total, desc="segmenting", unit="frame")
        self._bar.n = decoded
        if dropped:
            self._bar.set_postfix(processed=processed, dropped=dropped, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
