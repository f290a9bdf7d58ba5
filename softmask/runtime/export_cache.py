"""Streaming exports cached on disk, so a second run with the same model and settings starts in
seconds instead of re-exporting.

An export is keyed by what determines its bytes: the checkpoint's content (sha256 of the file, or
of the weights when a model object is given), the export settings (``StreamSpec`` and precision),
the versions of the exporter's packages (softmask, torch, onnx, onnxscript) and the manifest's
format. It is written into a temporary folder beside the cache entry and renamed into place when
complete, so an interrupted export (Ctrl-C) never leaves a half export under a valid key, and two
processes exporting the same key both end with one complete entry.

Where: ``--cache-dir``, else ``$SOFTMASK_CACHE/exports``, else ``$XDG_CACHE_HOME/softmask/exports``
(``~/.cache/softmask/exports``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from softmask import __version__
from softmask.errors import InputError
from softmask.export.manifest import MANIFEST_VERSION, StreamingExport, load_streaming_export
from softmask.export.spec import StreamSpec
from softmask.export.streaming import export_streaming
from softmask.model.hodor import HodorModel
from softmask.runtime.cache_dirs import cache_root

logger = logging.getLogger(__name__)

def model_sha256(model: HodorModel) -> str:
    """sha256 (hex) of a model's config and weights (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def package_version(name: str) -> str | None:
    """An installed package's version (None when it is not installed)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def export_key(model_hash: str, spec: StreamSpec, fp16: bool) -> str:
    """The cache key (hex, 24 characters) of an export of the model with content ``model_hash``."""
    identity = {
        "model": model_hash,
        "spec": asdict(spec),
        "precision": "fp16" if fp16 else "fp32",
        "softmask": __version__,
        "torch": torch.__version__,
        "onnx": package_version("onnx"),
        "onnxscript": package_version("onnxscript"),
        "format": MANIFEST_VERSION,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _touch(entry: Path) -> None:
    """Mark a cache entry used now (``softmask cache prune`` removes the least recently used)."""
    try:
        os.utime(entry)
    except OSError as error:  # a read-only cache still serves
        logger.debug("cannot mark %s used: %s", entry, error)


class ExportCache:
    """Exports stored as ``<directory>/<key>/`` (graphs + manifest.json)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_root() / "exports"

    def get(self, key: str) -> StreamingExport | None:
        """The cached export under ``key``, or None (a damaged entry is removed and missed)."""
        entry = self.directory / key
        if not entry.is_dir():
            return None
        try:
            return load_streaming_export(entry)
        except InputError as error:
            logger.warning("removing damaged cached export %s: %s", entry, error)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def get_or_export(
        self,
        key: str,
        model: Callable[[], HodorModel],
        spec: StreamSpec,
        fp16: bool,
        progress: Callable[[str], None] | None = None,
    ) -> tuple[StreamingExport, bool]:
        """(export, True) from the cache, or (export, False) after exporting ``model()`` into it.

        Raises:
            InputError: the cache folder cannot be written (named).
            ExportError: the export failed (nothing is left in the cache).
        """
        cached = self.get(key)
        if cached is not None:
            logger.info("export cache hit: %s", cached.directory)
            _touch(cached.directory)
            return cached, True
        entry = self.directory / key
        try:
            export = export_streaming(
                model(), entry, spec.height, spec.width, spec.num_objects,
                spec.temporal_window, fp16, spec.min_dim, spec.max_dim, progress=progress,
            )
        except InputError:
            # Another process may have finished the same export first; else the cache folder
            # cannot be written, and the error says where.
            raced = self.get(key)
            if raced is None:
                raise
            return raced, True
        logger.info("export cached: %s", entry)
        return export, False
