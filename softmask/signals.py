"""SIGTERM handled as Ctrl-C: what systemd, Docker and Kubernetes send to stop a process.

``terminate_as_interrupt`` makes SIGTERM raise ``Terminated``, a ``KeyboardInterrupt``, so every
path that keeps work on Ctrl-C (complete files only, ``report.json`` with ``completed: false``,
videos finalised, a stream's END sent) keeps it on SIGTERM too. The CLI exits with 143
(128 + SIGTERM) for it and 130 (128 + SIGINT) for Ctrl-C, as a shell reports the two signals.
"""

from __future__ import annotations

import signal
import threading

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled wherever Ctrl-C is."""

    def __init__(self) -> None:
        super().__init__("terminated by SIGTERM")


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise ``Terminated`` in the main thread (nothing outside it: Python delivers
    signals to the main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


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
