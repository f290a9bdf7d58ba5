"""Run a softmask command in a subprocess that stops at a named pause point
(``softmask.testing_hooks``), so a test signals it at a known step, never after a guessed sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from softmask.testing_hooks import PAUSE_AT, PAUSE_FILE

REPO = Path(__file__).resolve().parent.parent


# softmask's command line with Ctrl-C delivered as in a terminal: a test run started as a
# background job of a non-interactive shell inherits SIGINT ignored, and Python then never raises
# KeyboardInterrupt (it installs its handler only over the default disposition).
_CLI_WITH_CTRL_C = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from softmask.cli import main; sys.exit(main(sys.argv[1:]))"
)


def interrupt_at(
    point: str,
    args: list[object],
    marker: Path,
    sig: signal.Signals = signal.SIGINT,
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``softmask ARGS``, wait until it reaches pause point ``point``, send it ``sig`` and
    return its CompletedProcess (text stdout/stderr). The process is killed if it outlives
    ``timeout_s``; an AssertionError says when it ended before reaching the point."""
    marker.unlink(missing_ok=True)
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {}),
                PAUSE_AT: point, PAUSE_FILE: str(marker)}
    process = subprocess.Popen(
        [sys.executable, "-c", _CLI_WITH_CTRL_C, *map(str, args)], env=full_env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not marker.exists():
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(f"ended (exit {process.returncode}) before pause point "
                                     f"{point}:\n{err[-4000:]}")
            assert time.monotonic() < deadline, f"pause point {point} not reached in {timeout_s} s"
            time.sleep(0.02)
        process.send_signal(sig)
        out, err = process.communicate(timeout=timeout_s)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
