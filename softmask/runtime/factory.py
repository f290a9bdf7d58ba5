"""Backends by name, and where the model comes from."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from softmask.errors import InputError
from softmask.export.manifest import StreamingExport
from softmask.export.spec import StreamSpec
from softmask.optional import require_torch
from softmask.runtime.backend import Backend

if TYPE_CHECKING:
    from softmask.model.hodor import HodorModel

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt")


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
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
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
