"""What an export runs in float16: ``PrecisionPlan`` (fp32, fp16, or fp16 with groups of modules
kept in fp32), readable without PyTorch. ``softmask.export.mixed_precision`` makes the model copy
a plan calls for; its docstring says what each group holds and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from softmask.errors import InputError

if TYPE_CHECKING:
    import torch

FP32_GROUPS = ("descriptors", "attention", "norm", "decoder", "features")
# The model's top-level components and the group that keeps each in fp32.
COMPONENT_GROUPS = {"feature_extractor": "features", "encoder": "descriptors", "decoder": "decoder"}


@dataclass(frozen=True)
class PrecisionPlan:
    """fp16 (or not) and the groups (``FP32_GROUPS``) kept in fp32; groups need ``fp16``."""

    fp16: bool = False
    fp32_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fp32_groups) - set(FP32_GROUPS))
        if unknown:
            raise InputError(f"unknown fp32 group(s) {unknown}; choose from {list(FP32_GROUPS)}")
        if self.fp32_groups and not self.fp16:
            raise InputError("fp32 groups are islands in an fp16 export; they need fp16")
        ordered = tuple(g for g in FP32_GROUPS if g in self.fp32_groups)
        object.__setattr__(self, "fp32_groups", ordered)

    @property
    def name(self) -> str:
        """"fp32", "fp16" or "fp16+<group>+<group>" (groups in ``FP32_GROUPS`` order)."""
        if not self.fp16:
            return "fp32"
        return "+".join(("fp16", *self.fp32_groups))

    @property
    def precision(self) -> str:
        """The manifest's precision: "fp32" or "fp16" (also for fp16 with fp32 islands)."""
        return "fp16" if self.fp16 else "fp32"

    @property
    def state_dtype(self) -> torch.dtype:
        """torch dtype of the descriptor state (graph inputs/outputs ``fg``, ``bg``)."""
        import torch  # the exporter's; reading a plan needs no torch

        if self.fp16 and "descriptors" not in self.fp32_groups:
            return torch.float16
        return torch.float32

    def with_group(self, group: str) -> PrecisionPlan:
        return PrecisionPlan(True, (*self.fp32_groups, group))

    @classmethod
    def parse(cls, text: str) -> PrecisionPlan:
        """Inverse of ``name``."""
        head, *groups = text.split("+")
        if head not in ("fp32", "fp16") or (head == "fp32" and groups):
            raise InputError(f"precision {text!r}: expected fp32, fp16 or fp16+<group>...")
        return cls(head == "fp16", tuple(groups))
