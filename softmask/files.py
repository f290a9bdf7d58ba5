"""Files on disk: atomic writes (a file or folder under its final name is always complete) and
content digests (export manifests, cache keys, engine notes)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create files and folders for their owner only; finished ones get the usual
# permissions (what open() and mkdir() would have given under this process's umask).
FILE_MODE = 0o666 & ~_read_umask()
DIR_MODE = 0o777 & ~_read_umask()


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``,
    on an error (Ctrl-C included) it is removed. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike, replace: bool = False, noun: str = "folder"
) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; on a clean exit it is renamed to ``path`` (a
    folder under its final name is always complete), on an error (Ctrl-C included) removed.

    ``path`` must not exist, or be an empty folder; with ``replace`` an existing folder is
    replaced, and kept if the new one cannot be moved into place. ``noun`` names what the folder
    holds in error messages ("export", "repository").

    Raises:
        InputError: ``path`` is a file, a non-empty folder without ``replace``, or cannot be
            written (the OS's reason in the message).
    """
    from softmask.errors import InputError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is a file, not a folder")
    if path.is_dir() and not replace and any(path.iterdir()):
        raise InputError(f"{path}: folder exists and is not empty; write into a new folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    except OSError as error:
        raise InputError(f"{path}: cannot write the {noun}: {error.strerror or error}") from error
    earlier = None
    try:
        yield staging
        os.chmod(staging, DIR_MODE)
        try:
            if path.exists():
                earlier = Path(tempfile.mkdtemp(prefix=f".{path.name}.earlier-", dir=path.parent))
                os.rename(path, earlier / path.name)
            os.rename(staging, path)
        except OSError as error:
            if earlier is not None and not path.exists() and (earlier / path.name).exists():
                os.rename(earlier / path.name, path)
            raise InputError(
                f"{path}: cannot move the finished {noun} into place: {error.strerror or error}"
            ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if earlier is not None:
            shutil.rmtree(earlier, ignore_errors=True)
