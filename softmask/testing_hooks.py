"""Pause points: let a test interrupt a long command at a known step instead of after a guess.

A test that must stop softmask mid-work (Ctrl-C during an export, SIGTERM during a run) sets two
environment variables for the process under test:

- ``SOFTMASK_TEST_PAUSE_AT``: the name of the pause point to stop at (e.g. ``export-graph-written``);
- ``SOFTMASK_TEST_PAUSE_FILE``: a path; the process writes its pid there on reaching the point.

The process then waits at that point (at most ``SOFTMASK_TEST_PAUSE_S`` seconds, 120 by default)
for the signal the test sends once the file exists, so the signal always lands at the same step,
however fast or loaded the machine is. With the variables unset, which is every real run,
``pause_point`` returns at once.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

PAUSE_AT = "SOFTMASK_TEST_PAUSE_AT"
PAUSE_FILE = "SOFTMASK_TEST_PAUSE_FILE"
PAUSE_SECONDS = "SOFTMASK_TEST_PAUSE_S"
DEFAULT_PAUSE_S = 120.0


class PauseTimeout(RuntimeError):
    """No signal arrived while the process waited at a pause point."""


def pause_point(name: str) -> None:
    """Wait here for a signal if a test asked to pause at ``name``; else return at once.

    Raises:
        PauseTimeout: the test asked to pause here but sent no signal in time (so a broken test
            fails instead of hanging).
    """
    if os.environ.get(PAUSE_AT) != name:
        return
    seconds = float(os.environ.get(PAUSE_SECONDS, DEFAULT_PAUSE_S))
    marker = os.environ.get(PAUSE_FILE)
    if marker:
        # Written whole under a temporary name, so the test never reads an empty file.
        partial = Path(f"{marker}.{os.getpid()}.partial")
        partial.write_text(f"{os.getpid()}\n")
        os.replace(partial, marker)
    logger.debug("paused at %s for at most %.0f s", name, seconds)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    raise PauseTimeout(f"pause point {name}: no signal within {seconds:.0f} s")
