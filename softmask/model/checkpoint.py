"""Checkpoints in HODOR's format: ``torch.save({'model': state_dict, ...})``.

Original HODOR checkpoints hold ``model`` (plus optimiser/logger state, ignored) and have the
training config in ``config.yaml`` beside the file. Ours add ``softmask_config`` (``ModelConfig``
as a dict), so every config (e.g. "tiny") round-trips.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from softmask.errors import InputError
from softmask.files import atomic_file
from softmask.model.config import ModelConfig, resolve_config
from softmask.model.hodor import HodorModel

logger = logging.getLogger(__name__)

WEIGHTS_KEY = "model"
CONFIG_KEY = "softmask_config"
# Names listed per category in a mismatch error before it summarises the rest as a count.
MAX_LISTED = 50

# Trained checkpoints shipped in softmask/assets, by the name load_checkpoint accepts for them.
BUNDLED_CHECKPOINTS = {"tiny": "hodor_tiny.pth"}

# HODOR config.yaml MODEL keys -> ModelConfig fields.
_YAML_MODEL_KEYS = {
    "ENCODER_LAYERS": "encoder_layers",
    "DECODER_LAYERS": "decoder_layers",
    "NUM_ATTN_HEADS": "num_heads",
    "NUM_BG_DESCRIPTORS": "num_bg_descriptors",
    "POS_ENCODINGS_IN_FMQ": "encoder_key_pos",
    "POS_ENCODINGS_IN_FQM": "decoder_query_pos",
}


def bundled_checkpoint_path(name: str = "tiny") -> Path:
    """Path of a checkpoint shipped with softmask (``BUNDLED_CHECKPOINTS``)."""
    if name not in BUNDLED_CHECKPOINTS:
        raise InputError(f"no bundled checkpoint {name!r}; bundled: {sorted(BUNDLED_CHECKPOINTS)}")
    return Path(__file__).resolve().parent.parent / "assets" / BUNDLED_CHECKPOINTS[name]


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The file of a checkpoint given as a path, or as the name of a bundled checkpoint
    (``"tiny"``) when no file of that name exists.

    Raises:
        InputError: no such file.
    """
    path = Path(path)
    if not path.is_file() and str(path) in BUNDLED_CHECKPOINTS:
        path = bundled_checkpoint_path(str(path))
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    return path


def save_checkpoint(
    model: HodorModel, path: str | os.PathLike, extra: Mapping[str, Any] | None = None
) -> None:
    """Write ``{'model': state_dict, 'softmask_config': config dict, **extra}`` to path,
    atomically: an interrupted save leaves the earlier file as it was."""
    payload: dict[str, Any] = dict(extra or {})
    payload[WEIGHTS_KEY] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload[CONFIG_KEY] = model.config.to_dict()
    with atomic_file(Path(path)) as stream:
        torch.save(payload, stream)


def read_payload(path: str | os.PathLike) -> Mapping[str, Any]:
    """A checkpoint file's dictionary, read with ``torch.load(weights_only=True)`` (tensors and
    plain containers only: a file that pickles code is refused, never run).

    Raises:
        InputError: the file is not a checkpoint, unreadable, or pickles other objects.
    """
    return _read(Path(path), trust_pickle=False)


def config_from_hodor_yaml(path: Path) -> ModelConfig:
    """The "hodor" preset with the shape-relevant MODEL values of a HODOR config.yaml."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read HODOR config {path}: {exc}") from exc
    model_section = data.get("MODEL", {}) if isinstance(data, dict) else {}
    if model_section.get("TRANSFORMER_PRE_NORMALIZE", False):
        raise InputError(f"{path}: TRANSFORMER_PRE_NORMALIZE=True (pre-norm) is not supported")
    if model_section.get("NUM_CATCH_ALL_QUERIES", 1) != 1:
        raise InputError(f"{path}: NUM_CATCH_ALL_QUERIES must be 1 (HODOR asserts it)")
    overrides = {
        field: model_section[key] for key, field in _YAML_MODEL_KEYS.items() if key in model_section
    }
    return resolve_config({"preset": "hodor", **overrides})


def _looks_like_torch_save(path: Path) -> bool:
    """torch.save writes a zip archive (or, before torch 1.6, a pickle: protocol byte 0x80)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as handle:
        return handle.read(1) == b"\x80"


def _read(path: Path, trust_pickle: bool) -> Mapping[str, Any]:
    unreadable = (pickle.UnpicklingError, RuntimeError, EOFError, OSError)
    if not _looks_like_torch_save(path):
        raise InputError(
            f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); "
            "the file is corrupt or of another kind"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise InputError(
                f"{path}: refused by torch.load(weights_only=True): it pickles objects other "
                "than tensors and plain containers (e.g. a training logger). Re-save just the "
                "weights with torch.save({'model': state_dict}), or, if you trust the file, "
                "load it in Python with load_checkpoint(..., trust_pickle=True), which runs its "
                "pickle code"
            ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise InputError(f"{path}: cannot read checkpoint: {exc}") from exc
    logger.warning("loading %s with weights_only=False (trusted pickle)", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except unreadable as exc:
        raise InputError(f"{path}: cannot read checkpoint: {exc}") from exc


def state_dict_mismatches(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """(missing names, unexpected names, 'name: checkpoint [..] vs model [..]' shape mismatches)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = []
    for name in sorted(set(expected) & set(given)):
        value = given[name]
        if not isinstance(value, torch.Tensor):
            misshaped.append(f"{name}: not a tensor ({type(value).__name__})")
        elif tuple(value.shape) != tuple(expected[name].shape):
            misshaped.append(
                f"{name}: checkpoint {list(value.shape)} vs model {list(expected[name].shape)}"
            )
    return missing, unexpected, misshaped


def load_checkpoint(
    path: str | os.PathLike,
    config: ModelConfig | Mapping[str, Any] | str | None = None,
    trust_pickle: bool = False,
) -> HodorModel:
    """Build the model and load weights strictly; the model is returned in eval mode.

    ``path`` is a file, or the name of a bundled checkpoint (``"tiny"``: the trained tiny model
    shipped with softmask, see docs/model-card.md) when no file of that name exists.

    Config, first found: ``config``; the checkpoint's ``softmask_config``; ``config.yaml`` beside
    the file (HODOR's); the "hodor" preset.

    Raises:
        InputError: unreadable file, no 'model' dict, or missing / unexpected / mis-shaped tensors
            (all of them listed, with the file path).
    """
    path = checkpoint_file(path)
    payload = _read(path, trust_pickle)
    if not isinstance(payload, Mapping) or not isinstance(payload.get(WEIGHTS_KEY), Mapping):
        raise InputError(
            f"{path} is not a HODOR-format checkpoint: expected a dict with a '{WEIGHTS_KEY}' dict"
        )
    if config is not None:
        resolved = resolve_config(config)
    elif CONFIG_KEY in payload:
        resolved = ModelConfig.from_dict(payload[CONFIG_KEY])
    elif (path.parent / "config.yaml").is_file():
        resolved = config_from_hodor_yaml(path.parent / "config.yaml")
    else:
        resolved = resolve_config("hodor")
    model = HodorModel(resolved)
    weights = payload[WEIGHTS_KEY]
    missing, unexpected, misshaped = state_dict_mismatches(model.state_dict(), weights)
    if missing or unexpected or misshaped:
        lines = [f"checkpoint {path} does not match the '{resolved.name}' model:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        ):
            if items:
                more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:MAX_LISTED]) + more)
        raise InputError("\n".join(lines))
    model.load_state_dict(weights, strict=True)
    logger.info("loaded %s (%s config, %d tensors)", path, resolved.name, len(weights))
    return model.eval()
