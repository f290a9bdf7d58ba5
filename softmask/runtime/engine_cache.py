"""On-disk cache of serialised TensorRT engines.

An engine is valid only for the exact ONNX graph, TensorRT build and GPU it was built with, so the
key hashes all three (plus the build settings). Files are written atomically; a corrupt or foreign
file is never returned under a matching key because the key is the file name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "softmask" / "engines"


def engine_cache_key(
    onnx_bytes: bytes,
    tensorrt_version: str,
    gpu_name: str,
    settings: Mapping[str, object] | None = None,
) -> str:
    """sha256 (hex) identifying an engine: ONNX bytes as given to the parser, TensorRT version,
    GPU name, and build settings (JSON-serialisable, e.g. precision and workspace)."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(onnx_bytes).digest())
    header = {"tensorrt": tensorrt_version, "gpu": gpu_name, "settings": dict(settings or {})}
    digest.update(json.dumps(header, sort_keys=True).encode())
    return digest.hexdigest()


class EngineCache:
    """Engines stored as ``<directory>/<label>-<key>.engine`` with a JSON note beside each."""

    def __init__(self, directory: str | Path = DEFAULT_CACHE_DIR) -> None:
        self.directory = Path(directory)

    def path(self, label: str, key: str) -> Path:
        return self.directory / f"{label}-{key}.engine"

    def get(self, label: str, key: str) -> bytes | None:
        """The cached engine's bytes, or None."""
        path = self.path(label, key)
        if not path.is_file():
            return None
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
            handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=self.directory)
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        logger.info("engine cached: %s", path)
        return path

    def get_or_build(
        self, label: str, key: str, build: Callable[[], bytes], note: Mapping[str, object]
    ) -> bytes:
        """The cached engine, or ``build()``'s result stored first."""
        engine = self.get(label, key)
        if engine is None:
            engine = build()
            self.put(label, key, engine, note)
        return engine
