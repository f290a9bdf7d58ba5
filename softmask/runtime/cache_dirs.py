"""Where softmask keeps its caches (exports, TensorRT engines and timing caches)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SOFTMASK_CACHE"


def cache_root() -> Path:
    """``$SOFTMASK_CACHE``, else ``$XDG_CACHE_HOME/softmask``, else ``~/.cache/softmask``; each
    cache lives in a subfolder (``exports``, ``engines``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "softmask"
