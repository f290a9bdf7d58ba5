"""On-disk cache of serialised TensorRT engines, and the timing caches of their builds.

An engine is valid only for the exact ONNX graph, TensorRT build, GPU and plugin it was built with
(the plugin's workspace size and serialised fields, the kernel library's table), so the key hashes
all of them plus the build settings. Each engine has a JSON note beside it recording what it was
built with; an engine whose note disagrees with this process (a file copied from another machine
or build) is refused with the reason instead of being handed to TensorRT. Files are written
atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from softmask.errors import BackendUnavailable
from softmask.files import atomic_file
from softmask.runtime.cache_dirs import cache_root

logger = logging.getLogger(__name__)



# Note fields that must equal this process's for an engine to be used, with what they name.
ENVIRONMENT_FIELDS = {
    "tensorrt": "TensorRT version",
    "gpu": "GPU",
    "plugin_sha256": "plugin library (sha256)",
    "kernels_sha256": "kernel library (sha256)",
}


def engine_cache_key(
    onnx_bytes: bytes,
    tensorrt_version: str,
    gpu_name: str,
    settings: Mapping[str, object] | None,
    libraries: Mapping[str, str],
) -> str:
    """sha256 (hex) identifying an engine: ONNX bytes as given to the parser, TensorRT version,
    GPU name, build settings (JSON-serialisable, e.g. precision and workspace) and the plugin and
    kernel libraries (``softmask.plugins.library_digests()``)."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(onnx_bytes).digest())
    header = {
        "tensorrt": tensorrt_version,
        "gpu": gpu_name,
        "settings": dict(settings or {}),
        "libraries": dict(libraries),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    return digest.hexdigest()


def check_engine_note(path: Path, note: Mapping[str, object], expected: Mapping[str, object]) -> None:
    """Raise BackendUnavailable naming the first environment field of ``note`` that differs from
    ``expected`` (only fields of ENVIRONMENT_FIELDS present in ``expected`` are compared)."""
    for field, what in ENVIRONMENT_FIELDS.items():
        if field not in expected:
            continue
        if field not in note:
            raise BackendUnavailable(
                f"{path} was stored without the {what} it was built with; delete it to rebuild"
            )
        if note[field] != expected[field]:
            raise BackendUnavailable(
                f"{path} was built for {what} {note[field]!r}, this process has {expected[field]!r}; "
                "TensorRT engines run only where they were built: delete the file to rebuild it here"
            )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


class EngineCache:
    """Engines stored as ``<directory>/<label>-<key>.engine`` with a JSON note beside each."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_root() / "engines"

    def path(self, label: str, key: str) -> Path:
        return self.directory / f"{label}-{key}.engine"

    def timing_cache_path(self, tensorrt_version: str, gpu_name: str) -> Path:
        """Where builds for this TensorRT version and GPU keep their timing cache."""
        return self.directory / f"timing-{_slug(tensorrt_version)}-{_slug(gpu_name)}.cache"

    def get(self, label: str, key: str, expected: Mapping[str, object] | None = None) -> bytes | None:
        """The cached engine's bytes, or None when there is none.

        Raises:
            BackendUnavailable: the engine's note is missing or unreadable, or records a TensorRT
                version, GPU or library hash other than ``expected``'s.
        """
        path = self.path(label, key)
        if not path.is_file():
            return None
        if expected:
            note_path = path.with_suffix(".json")
            try:
                note = json.loads(note_path.read_text())
            except (OSError, ValueError) as error:
                raise BackendUnavailable(
                    f"{path} has no readable note ({note_path}: {error}); delete the engine to rebuild it"
                ) from error
            check_engine_note(path, note, expected)
        logger.info("engine cache hit: %s", path)
        return path.read_bytes()

    def put(self, label: str, key: str, engine: bytes, note: Mapping[str, object]) -> Path:
        """Store ``engine`` atomically, with ``note`` (what it was built from) as JSON beside it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(label, key)
        for target, data in (
            (path.with_suffix(".json"), json.dumps(dict(note), indent=2).encode()),
            (path, engine),
        ):
            with atomic_file(target) as stream:
                stream.write(data)
        logger.info("engine cached: %s", path)
        return path

    def get_or_build(
        self, label: str, key: str, build: Callable[[], bytes], note: Mapping[str, object]
    ) -> bytes:
        """The cached engine (its note checked against ``note``'s environment fields), or
        ``build()``'s result stored first with ``note``."""
        expected = {field: note[field] for field in ENVIRONMENT_FIELDS if field in note}
        engine = self.get(label, key, expected)
        if engine is None:
            engine = build()
            self.put(label, key, engine, note)
        return engine
