"""How a run builds its backend: the settings a user gives (CLI flags in brackets), their checks,
and ``prepare_backend``, which turns them into a ready backend plus setup times.

Every setting either takes effect or is refused with one line saying why; nothing is silently
dropped. Errors name the CLI flag, because that is how most users meet them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from softmask.errors import InputError
from softmask.export.manifest import MANIFEST_NAME, StreamingExport, load_streaming_export
from softmask.export.spec import StreamSpec
from softmask.files import file_sha256
from softmask.optional import require_torch
from softmask.runtime.backend import Backend
from softmask.runtime.factory import (
    BACKENDS,
    backends_where,
    capabilities,
    check_backend_available,
    create_backend,
    resolve_model,
)

if TYPE_CHECKING:
    from softmask.model.hodor import HodorModel

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 7


@dataclass(frozen=True)
class RunSettings:
    """What to run a stream with.

    backend [--backend]: "torch", "onnxruntime" or "tensorrt".
    checkpoint [--checkpoint]: path, bundled name ("tiny"), a HodorModel, or None (bundled tiny).
    export_dir [--export-dir]: a streaming export to run instead of exporting (exported backends).
    num_objects [--objects], temporal_window [--window], min_dim [--min-dim],
    max_dim [--max-dim], fp16 [--fp16]: export settings; with ``export_dir`` they must match it.
    providers [--providers]: ONNX Runtime execution providers.
    engine_cache_dir [--engine-cache]: TensorRT engine cache folder.
    cache_dir [--cache-dir]: export cache folder (default ``softmask.runtime.export_cache``'s).
    threads [--threads]: intra-op CPU threads of torch / ONNX Runtime.
    with_scores: backends also return per-object scores (parity).
    """

    backend: str = "onnxruntime"
    checkpoint: str | Path | HodorModel | None = None
    export_dir: str | Path | None = None
    num_objects: int | None = None
    temporal_window: int | None = None
    min_dim: int | None = None
    max_dim: int | None = None
    fp16: bool = False
    providers: Sequence[str] | None = None
    engine_cache_dir: str | Path | None = None
    cache_dir: str | Path | None = None
    threads: int | None = None
    with_scores: bool = False

    def check(self) -> None:
        """Refuse settings that cannot take effect together (before any work); which flags apply
        to which backend is ``softmask.runtime.factory.capabilities``' table.

        Raises:
            InputError: one line naming the flag and why.
        """
        if self.backend not in BACKENDS:
            raise InputError(f"--backend {self.backend}: choose one of {', '.join(BACKENDS)}")
        for flag, value in (
            ("--objects", self.num_objects),
            ("--window", self.temporal_window),
            ("--min-dim", self.min_dim),
            ("--max-dim", self.max_dim),
            ("--threads", self.threads),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{flag} {value}: must be a positive integer")
        can = capabilities(self.backend)
        exporters = backends_where(lambda c: c.exports_graphs)
        refusals = [
            (not can.exports_graphs and self.fp16,
             (f"--fp16 applies to the exported graphs (--backend {' or '.join(exporters)}); the "
              f"{self.backend} backend runs the checkpoint as it is")),
            (not can.exports_graphs and self.export_dir is not None,
             (f"--export-dir holds ONNX graphs, which the {self.backend} backend does not run; "
              f"drop it or choose --backend {exporters[0]}")),
            (not can.exports_graphs and self.cache_dir is not None,
             f"--cache-dir: the {self.backend} backend exports nothing"),
            (self.providers is not None and not can.takes_providers,
             (f"--providers applies to --backend "
              f"{' or '.join(backends_where(lambda c: c.takes_providers))}, not {self.backend}")),
            (self.engine_cache_dir is not None and not can.builds_engines_with(self.providers),
             (f"--engine-cache applies to --backend "
              f"{' or '.join(backends_where(lambda c: c.builds_engines))} and to --providers "
              f"tensorrt, not --backend {self.backend}"
              f"{' without it' if can.engine_providers else ''}")),
            (self.threads is not None and not can.takes_threads,
             (f"--threads sets the CPU threads of "
              f"{' and '.join(backends_where(lambda c: c.takes_threads))}, not of {self.backend}")),
            (self.export_dir is not None and self.checkpoint is not None,
             (f"--checkpoint: the export in {self.export_dir} already holds its weights; give "
             "--checkpoint or --export-dir, not both")),
            (self.export_dir is not None and self.cache_dir is not None,
             "--cache-dir: nothing is exported when --export-dir is given"),
        ]
        for refused, message in refusals:
            if refused:
                raise InputError(message)

    def check_export(self, export: StreamingExport) -> None:
        """Refuse export settings that differ from those ``export`` was made with.

        Raises:
            InputError: one line naming the flag, the export and both values.
        """
        spec = export.spec
        if self.fp16 and export.precision != "fp16":
            raise InputError(
                f"--fp16: the export in {export.directory} is {export.precision}; export it again "
                "with --fp16, or drop --fp16"
            )
        for flag, given, made in (
            ("--objects", self.num_objects, spec.num_objects),
            ("--window", self.temporal_window, spec.temporal_window),
            ("--min-dim", self.min_dim, spec.min_dim),
            ("--max-dim", self.max_dim, spec.max_dim),
        ):
            if given is not None and given != made:
                raise InputError(
                    f"{flag} {given}: the export in {export.directory} was made with {made}; "
                    f"drop {flag} or export again"
                )

    def spec(self, height: int, width: int, largest_id: int) -> StreamSpec:
        """The stream spec for frames of ``height`` x ``width`` whose annotations use ids up to
        ``largest_id`` (the slots when ``--objects`` is not given)."""
        return StreamSpec(
            height, width, self.num_objects or largest_id,
            self.temporal_window or DEFAULT_WINDOW, self.min_dim, self.max_dim,
        )


@dataclass
class PreparedBackend:
    """A backend ready for a stream, and how it was made.

    setup: seconds per setup step: ``model_load_s`` (torch), ``export_s`` (loading the model
        and exporting, only when that happened), ``backend_init_s`` (sessions, engines); and
        ``export``: "cache hit", "cache miss" (exported now), "given" (``--export-dir``) or None
        (torch); ``export_dir``: the graphs' folder; ``model``: sha256 of the checkpoint (of the
        manifest for ``--export-dir``), which identifies the weights the masks come from.
    """

    backend: Backend
    setup: dict[str, Any] = field(default_factory=dict)


def checkpoint_identity(
    checkpoint: str | Path | HodorModel | None,
) -> tuple[str, Callable[[], HodorModel]]:
    """(content hash, loader) of a checkpoint: the file's sha256 (plus HODOR's ``config.yaml``
    beside it), or the weights' for a model object; the loader loads it only when called.
    Needs PyTorch (a checkpoint is a torch file)."""
    from softmask.model.checkpoint import checkpoint_file
    from softmask.runtime.export_cache import model_sha256

    if not isinstance(checkpoint, (str, Path)) and checkpoint is not None:  # a HodorModel
        return model_sha256(checkpoint), lambda: resolve_model(checkpoint)
    path = checkpoint_file(checkpoint if checkpoint is not None else "tiny")
    digest = file_sha256(path)
    config = path.parent / "config.yaml"
    if config.is_file():
        digest += file_sha256(config)
    return digest, lambda: resolve_model(path)


def resolve_export(
    settings: RunSettings,
    height: int,
    width: int,
    largest_id: int,
    on_export: Callable[[str], None] | None = None,
) -> tuple[StreamingExport, dict[str, Any]]:
    """The streaming export ``settings`` call for: ``--export-dir`` (checked against the
    settings and the frame size), else the export cache's entry, made now if missing.

    Returns:
        (export, setup): ``export`` ("given", "cache hit", "cache miss"), ``export_dir``, and
        ``export_s`` when the model was exported now.

    Raises:
        InputError: the export does not fit the settings or the frames; unloadable checkpoint.
        ExportError: the export failed.
        BackendUnavailable: an export is needed and PyTorch is not installed.
    """
    tick = time.perf_counter()
    setup: dict[str, Any] = {}
    if settings.export_dir is not None:
        export = load_streaming_export(settings.export_dir)
        settings.check_export(export)
        made = (export.spec.height, export.spec.width)
        if made != (height, width):
            raise InputError(
                f"--export-dir {export.directory}: made for {made[0]}x{made[1]} frames, these "
                f"frames are {height}x{width}; export again for this size"
            )
        setup["export"] = "given"
        setup["model"] = file_sha256(export.directory / MANIFEST_NAME)
    else:
        require_torch("exporting a checkpoint", "run an existing export with --export-dir")
        from softmask.runtime.export_cache import ExportCache, export_key

        digest, load_model = checkpoint_identity(settings.checkpoint)
        spec = settings.spec(height, width, largest_id)
        cache = ExportCache(settings.cache_dir)
        export, hit = cache.get_or_export(
            export_key(digest, spec, settings.fp16), load_model, spec, settings.fp16, on_export
        )
        setup["export"] = "cache hit" if hit else "cache miss"
        setup["model"] = digest
        if not hit:  # loading the model and exporting; a cache hit costs neither
            setup["export_s"] = time.perf_counter() - tick
    setup["export_dir"] = str(export.directory)
    return export, setup


def prepare_backend(
    settings: RunSettings,
    height: int,
    width: int,
    largest_id: int,
    on_export: Callable[[str], None] | None = None,
) -> PreparedBackend:
    """Build ``settings.backend`` for frames of ``height`` x ``width`` with annotation ids up to
    ``largest_id``.

    Order: settings checked, backend availability checked (exit code 4 before any long work),
    then the model loaded / the export found in the cache or made, then the backend built.

    Args:
        on_export: called with each graph's name while exporting (progress output).

    Raises:
        InputError: settings refused (``RunSettings.check``/``check_export``) or unloadable
            checkpoint/export.
        BackendUnavailable: the backend cannot run here.
        ExportError: the export failed.
    """
    settings.check()
    check_backend_available(settings.backend, settings.providers)
    setup: dict[str, Any] = {"export": None, "export_dir": None}
    if not capabilities(settings.backend).exports_graphs:
        tick = time.perf_counter()
        setup["model"], load_model = checkpoint_identity(settings.checkpoint)
        model = load_model()
        setup["model_load_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        backend = create_backend(
            settings.backend, model=model, spec=settings.spec(height, width, largest_id),
            with_scores=settings.with_scores, threads=settings.threads,
        )
        setup["backend_init_s"] = time.perf_counter() - tick
        return PreparedBackend(backend, setup)
    export, export_setup = resolve_export(settings, height, width, largest_id, on_export)
    setup.update(export_setup)
    tick = time.perf_counter()
    backend = create_backend(
        settings.backend, export=export, providers=settings.providers,
        engine_cache_dir=settings.engine_cache_dir, with_scores=settings.with_scores,
        threads=settings.threads,
    )
    setup["backend_init_s"] = time.perf_counter() - tick
    if backend.precision == "fp16" and backend.device.startswith("cpu"):
        logger.warning(
            "fp16 graphs on the CPU are slow (CPU kernels convert float16); use them to check "
            "what a GPU will run, and fp32 for speed on the CPU"
        )
    return PreparedBackend(backend, setup)
