"""What softmask's caches hold, and pruning them to a size.

The caches live under ``cache_root()`` (``softmask.runtime.cache_dirs``): ``exports/<key>/``
(streaming exports) and ``engines/`` (TensorRT engines, each ``<label>-<key>.engine`` with its
``.json`` note, and timing caches). An entry is an export folder, or the files of ``engines/``
that share a stem (an engine and its note). Its last use is the newest modification time of its
files: an export is touched on each cache hit. Entries being written (hidden names: temporary
files and partial exports) are never listed nor pruned.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from softmask.errors import InputError
from softmask.runtime.cache_dirs import cache_root

logger = logging.getLogger(__name__)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass
class CacheEntry:
    """One cache entry: its cache, name, paths, size (bytes) and last use (seconds since the
    epoch)."""

    cache: str
    name: str
    paths: list[Path] = field(default_factory=list)
    size: int = 0
    last_used: float = 0.0


def parse_size(text: str) -> int:
    """Bytes of ``500M``, ``2G``, ``1.5GiB``, ``4096`` (powers of 1024).

    Raises:
        InputError: not a size.
    """
    found = _SIZE.match(text)
    if not found:
        raise InputError(f"--max-size {text!r}: expected a size such as 500M, 2G or 4096 (bytes)")
    return int(float(found.group(1)) * _UNITS[found.group(2).lower()])


def _tree_stats(path: Path) -> tuple[int, float]:
    """(bytes, newest mtime) of a file or a folder's files."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    newest = max([s.st_mtime for s in stats] + [path.stat().st_mtime])
    return sum(s.st_size for s in stats), newest


def cache_folders(exports: Path | None = None, engines: Path | None = None) -> dict[str, Path]:
    """The caches' folders: those given (``--cache-dir``, ``--engine-cache``), else the
    defaults under ``cache_root()``."""
    root = cache_root()
    return {"exports": Path(exports) if exports else root / "exports",
            "engines": Path(engines) if engines else root / "engines"}


def cache_entries(folders: dict[str, Path] | None = None) -> list[CacheEntry]:
    """Every complete entry of the caches (``cache_folders()`` by default), least recently used
    first."""
    entries: dict[tuple[str, str], CacheEntry] = {}
    for cache, folder in (folders or cache_folders()).items():
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith("."):
                continue
            name = path.name if path.is_dir() else path.stem
            entry = entries.setdefault((cache, name), CacheEntry(cache, name))
            size, used = _tree_stats(path)
            entry.paths.append(path)
            entry.size += size
            entry.last_used = max(entry.last_used, used)
    return sorted(entries.values(), key=lambda e: (e.last_used, e.cache, e.name))


def prune(max_size: int, folders: dict[str, Path] | None = None) -> list[CacheEntry]:
    """Delete least recently used entries until the caches hold at most ``max_size`` bytes;
    returns the deleted entries."""
    entries = cache_entries(folders)
    total = sum(e.size for e in entries)
    removed = []
    for entry in entries:
        if total <= max_size:
            break
        for path in entry.paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        total -= entry.size
        removed.append(entry)
        logger.info("pruned %s/%s (%d bytes)", entry.cache, entry.name, entry.size)
    return removed
