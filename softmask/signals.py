"""SIGTERM handled as Ctrl-C: what systemd, Docker and Kubernetes send to stop a process.

``terminate_as_interrupt`` makes SIGTERM raise ``Terminated``, a ``KeyboardInterrupt``, so every
path that keeps work on Ctrl-C (complete files only, ``report.json`` with ``completed: false``,
videos finalised, a stream's END sent) keeps it on SIGTERM too. The CLI exits with 143
(128 + SIGTERM) for it and 130 (128 + SIGINT) for Ctrl-C, as a shell reports the two signals.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled wherever Ctrl-C is."""

    def __init__(self) -> None:
        super().__init__("terminated by SIGTERM")


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While in the block, SIGTERM raises ``Terminated`` in the main thread; the previous handler
    is restored after it. Outside the main thread it changes nothing (Python delivers signals to
    the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_reason(error: BaseException) -> str:
    """What a report says ended the work: ``terminated by SIGTERM``, ``interrupted (Ctrl-C)``,
    or the error's message."""
    if isinstance(error, Terminated):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return str(error) or type(error).__name__


def exit_code(error: KeyboardInterrupt) -> int:
    """143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED
