"""Export precision: fp32, fp16, or fp16 with groups of modules kept in fp32 ("fp32 islands").

A ``PrecisionPlan`` names what runs in float16. ``mixed_precision_model`` makes the copy of a model
that ``export_streaming`` exports for a plan:

| group | kept in fp32 | why it is a candidate |
| --- | --- | --- |
| ``descriptors`` | the encoder and the descriptor ring buffer (graph state ``fg``/``bg`` in fp32) | the recurrent path: descriptor error is carried to every later frame |
| ``attention`` | every ``SoftMaskedAttention`` module (projections and the op) | the soft mask's ``alpha * (1 - m)`` term and the logits |
| ``norm`` | every LayerNorm and GroupNorm | variance sums of many fp16 terms |
| ``decoder`` | the decoder | per-pixel logits compared by the final argmax |
| ``features`` | the backbone | the first stage: its error reaches every other module |

Casts sit at island edges only. A model component (``feature_extractor``, ``encoder``,
``decoder``) casts its floating inputs to its own dtype on entry; an island inside an fp16
component (an attention or norm module) casts its inputs to float32 and its outputs back to the
caller's dtype. So a ``SoftMaskedAttention`` node always sees one type T for query, key, value and
output (the node's contract, docs/ops.md): float32 inside an island, float16 outside.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from softmask.export.plan import (  # noqa: F401 (re-exported)
    COMPONENT_GROUPS,
    FP32_GROUPS,
    PrecisionPlan,
)
from softmask.model.hodor import HodorModel
from softmask.ops.module import SoftMaskedAttention

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, SoftMaskedAttention)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES)


_SUBMODULE_GROUPS = {"attention": _is_attention, "norm": _is_norm}


def groups_of_module(path: str, model: HodorModel) -> list[str]:
    """The groups whose island contains module ``path`` (a dotted path in ``model``, optionally
    with a ``#call`` or ``[i]`` suffix), smallest island first."""
    path = path.split("#")[0].split("[")[0].split(":")[0]
    found = []
    parts = path.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            continue
        for group, test in _SUBMODULE_GROUPS.items():
            if test(module) and group not in found:
                found.append(group)
    component = COMPONENT_GROUPS.get(parts[0])
    if component is not None:
        found.append(component)
    return found


def _floating(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype.is_floating_point


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Cast floating tensors (also inside tuples and lists) to dtype; leave the rest."""
    if _floating(value):
        return value.to(dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _first_float_dtype(values: Iterable[Any]) -> torch.dtype | None:
    for value in values:
        if _floating(value):
            return value.dtype
        if isinstance(value, (list, tuple)):
            found = _first_float_dtype(value)
            if found is not None:
                return found
    return None


def _entry_cast(dtype: torch.dtype):
    """Forward pre-hook: floating inputs to ``dtype`` (a component's edge)."""

    def hook(module, args, kwargs):
        return _cast(args, dtype), {k: _cast(v, dtype) for k, v in kwargs.items()}

    return hook


class _Island:
    """Hooks making one module an fp32 island: inputs to float32 on entry, outputs back to the
    caller's dtype (the first floating input's) on exit."""

    def __init__(self) -> None:
        self.callers: list[torch.dtype] = []

    def enter(self, module, args, kwargs):
        caller = _first_float_dtype((*args, *kwargs.values())) or torch.float32
        self.callers.append(caller)
        return _cast(args, torch.float32), {k: _cast(v, torch.float32) for k, v in kwargs.items()}

    def leave(self, module, args, kwargs, output):
        return _cast(output, self.callers.pop())


def mixed_precision_model(model: HodorModel, plan: PrecisionPlan) -> HodorModel:
    """A copy of ``model`` (eval mode) in ``plan``'s precision, with casts at the island edges.

    fp32: a plain copy. fp16: the copy is float16 except the modules of ``plan.fp32_groups``;
    the copy's hooks do the casting, so the graph modules of ``softmask.export.frame_graphs`` run
    it unchanged (their state inputs must then be ``plan.state_dtype``).
    """
    mixed = copy.deepcopy(model).eval()
    if not plan.fp16:
        return mixed.float()
    mixed.half()
    kept = set(plan.fp32_groups)
    fp32_components = {name for name, group in COMPONENT_GROUPS.items() if group in kept}
    for name in COMPONENT_GROUPS:
        component = mixed.get_submodule(name)
        dtype = torch.float32 if name in fp32_components else torch.float16
        component.to(dtype)
        component.register_forward_pre_hook(_entry_cast(dtype), with_kwargs=True)
        if name in fp32_components:
            continue
        for group, test in _SUBMODULE_GROUPS.items():
            if group not in kept:
                continue
            for module in component.modules():
                if test(module) and not hasattr(module, "_softmask_island"):
                    island = _Island()
                    module._softmask_island = island
                    module.float()
                    module.register_forward_pre_hook(island.enter, with_kwargs=True)
                    module.register_forward_hook(island.leave, with_kwargs=True)
    return mixed
