"""Backends by name: what each one does with a run's settings (``capabilities``), building one,
and where the model comes from."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from softmask.errors import InputError
from softmask.export.manifest import StreamingExport
from softmask.export.spec import StreamSpec
from softmask.optional import require_torch
from softmask.runtime.backend import Backend
from softmask.runtime.onnxruntime_backend import PROVIDER_ALIASES, TENSORRT_PROVIDER

if TYPE_CHECKING:
    from softmask.model.hodor import HodorModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendCapabilities:
    """What one backend does with a run's settings; every check of which flag applies to which
    backend reads this table (``capabilities``), so adding a backend is adding a row.

    name: the backend (``--backend``).
    exports_graphs: runs a streaming export (ONNX graphs), so --fp16, --export-dir and
        --cache-dir apply; False: runs the PyTorch checkpoint as it is (its modules can be
        hooked, which module localization needs of a reference).
    takes_providers: runs on ONNX Runtime execution providers (--providers).
    builds_engines: always builds TensorRT engines (--engine-cache applies).
    engine_providers: lower-case provider names (full or --providers short names) with which it
        builds TensorRT engines too (ONNX Runtime's TensorRT provider).
    takes_threads: has intra-op CPU threads to set (--threads).
    gpu_only: runs on a GPU only (no CPU device).
    probes_graphs: can run an exported graph with intermediate outputs (``OnnxProbes``), which
        module localization of an exported candidate needs.
    """

    name: str
    exports_graphs: bool
    takes_providers: bool = False
    builds_engines: bool = False
    engine_providers: frozenset[str] = field(default_factory=frozenset)
    takes_threads: bool = False
    gpu_only: bool = False
    probes_graphs: bool = False

    def builds_engines_with(self, providers: Sequence[str] | None) -> bool:
        """Whether it builds TensorRT engines when run with these ``--providers``."""
        named = {p.lower() for p in providers or ()}
        return self.builds_engines or bool(named & self.engine_providers)


_TENSORRT_PROVIDER_NAMES = frozenset(
    {TENSORRT_PROVIDER.lower()}
    | {alias for alias, full in PROVIDER_ALIASES.items() if TENSORRT_PROVIDER in full}
)
CAPABILITIES = {
    c.name: c
    for c in (
        BackendCapabilities("torch", exports_graphs=False, takes_threads=True),
        BackendCapabilities("onnxruntime", exports_graphs=True, takes_providers=True,
                            engine_providers=_TENSORRT_PROVIDER_NAMES, takes_threads=True,
                            probes_graphs=True),
        BackendCapabilities("tensorrt", exports_graphs=True, builds_engines=True, gpu_only=True),
    )
}
BACKENDS = tuple(CAPABILITIES)


def capabilities(name: str) -> BackendCapabilities:
    """Backend ``name``'s row of the capability table.

    Raises:
        InputError: unknown name.
    """
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}") from None


def backends_where(test: Callable[[BackendCapabilities], bool]) -> tuple[str, ...]:
    """The backends whose row passes ``test``, in table order (for messages and choices)."""
    return tuple(c.name for c in CAPABILITIES.values() if test(c))


def resolve_model(checkpoint: str | Path | HodorModel | None) -> HodorModel:
    """A model in eval mode from a checkpoint path, a HodorModel, or (None) the bundled tiny model.

    Raises:
        InputError: the checkpoint cannot be loaded.
        BackendUnavailable: PyTorch is not installed.
    """
    require_torch("loading a checkpoint")
    from softmask.model.checkpoint import bundled_checkpoint_path, load_checkpoint
    from softmask.model.hodor import HodorModel

    if isinstance(checkpoint, HodorModel):
        return checkpoint.eval()
    if checkpoint is None:
        checkpoint = bundled_checkpoint_path("tiny")
        logger.info("using the bundled model %s", checkpoint)
    return load_checkpoint(checkpoint)


def create_backend(
    name: str,
    *,
    model: HodorModel | None = None,
    export: StreamingExport | None = None,
    spec: StreamSpec | None = None,
    with_scores: bool = False,
    providers: Sequence[str] | None = None,
    engine_cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> Backend:
    """Build backend ``name``: "torch" needs ``model`` and ``spec``; "onnxruntime" and "tensorrt"
    need ``export``.

    Raises:
        InputError: unknown name or a missing argument.
        BackendUnavailable: the backend cannot run on this machine.
    """
    capabilities(name)
    if name == "torch":
        if model is None or spec is None:
            raise InputError("the torch backend needs a model and a StreamSpec")
        require_torch("the torch backend")
        from softmask.runtime.torch_backend import TorchBackend

        return TorchBackend(model, spec, with_scores=with_scores, threads=threads)
    if export is None:
        raise InputError(f"the {name} backend needs an export (export_streaming's output)")
    if name == "onnxruntime":
        from softmask.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(
            export, providers=providers, with_scores=with_scores, threads=threads,
            engine_cache_dir=engine_cache_dir,
        )
    from softmask.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(export, cache_dir=engine_cache_dir, with_scores=with_scores)


def check_backend_available(name: str, providers: Sequence[str] | None = None) -> None:
    """Raise BackendUnavailable now, before any long work, if backend ``name`` (with these ONNX
    Runtime ``providers``) cannot run on this machine."""
    if name == "torch":
        require_torch("the torch backend")
    elif name == "onnxruntime":
        from softmask.runtime.onnxruntime_backend import select_providers

        select_providers(providers)
    elif name == "tensorrt":
        from softmask.runtime.tensorrt_backend import check_tensorrt_available

        check_tensorrt_available()
