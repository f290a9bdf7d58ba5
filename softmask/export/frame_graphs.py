"""The per-frame streaming graphs as torch modules: what ``export_streaming`` exports and what
``softmask.runtime.TorchBackend`` runs.

Each module is one frame of HODOR's video loop (``softmask.model.video``) with pre- and
post-processing inside, for one fixed frame size, object count N and window W (batch 1):

    uint8 frame [H, W, 3] (+ uint8 annotation [H, W]) + state  ->  uint8 labels [H, W],
    float32 object scores [N, H, W], next state

| graph | used on | model calls |
| --- | --- | --- |
| ``init`` | the first frame whose annotation gives a trackable object | features, annotate, first_frame |
| ``step`` | every later frame without an annotation | features, step |
| ``annotate`` | a later frame with an annotation (new or re-annotated objects) | features, annotate, step |

Frames before the first annotation run no graph: their labels are zeros, and the runtime advances
the ring buffer (``push_empty``).

The state is ``VideoState``'s five tensors, in ``STATE_NAMES`` order (shapes in ``state_shapes``):
fg [1, N, W, C], fg_valid [1, N, W] bool, bg [1, Qb, W, C], bg_valid [1, Qb, W] bool, active [1, N]
bool. Descriptors are in the model's dtype (float16 in an fp16 export).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softmask.errors import InputError
from softmask.model.hodor import HodorModel
from softmask.model.video import (
    FrameGeometry,
    VideoState,
    annotate,
    finalize,
    first_frame,
    frame_geometry,
    prepare_annotation,
    preprocess_frame,
    step,
)

GRAPH_NAMES = ("init", "step", "annotate")
STATE_NAMES = ("fg", "fg_valid", "bg", "bg_valid", "active")
# State tensors holding descriptors (the model's dtype); the others are bool flags.
FLOAT_STATE = ("fg", "bg")
# Graph outputs carrying the next state are named "<state name>_next".
NEXT_SUFFIX = "_next"


@dataclass(frozen=True)
class StreamSpec:
    """Everything fixed by one export: frame size (pixels), objects, window, resize rule.

    min_dim / max_dim: ``frame_geometry``'s resize rule applied inside the graphs (None, None: the
    model sees the frame at its own size, padded to multiples of 32).
    """

    height: int
    width: int
    num_objects: int
    temporal_window: int = 7
    min_dim: int | None = None
    max_dim: int | None = None

    def __post_init__(self) -> None:
        for name in ("height", "width", "num_objects", "temporal_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")

    @property
    def geometry(self) -> FrameGeometry:
        """Original, resized and padded sizes of every frame."""
        return frame_geometry(self.height, self.width, self.min_dim, self.max_dim)


def state_shapes(model: HodorModel, spec: StreamSpec) -> dict[str, tuple[int, ...]]:
    """Shape of each state tensor, keyed by ``STATE_NAMES``."""
    n, w, c, qb = spec.num_objects, spec.temporal_window, model.config.dim, model.num_bg
    return {
        "fg": (1, n, w, c),
        "fg_valid": (1, n, w),
        "bg": (1, qb, w, c),
        "bg_valid": (1, qb, w),
        "active": (1, n),
    }


def empty_state(
    model: HodorModel, spec: StreamSpec, device=None, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, ...]:
    """The state of a video before its first frame (nothing valid), in ``STATE_NAMES`` order;
    descriptors in ``dtype`` (default: the model's first parameter's)."""
    dtype = dtype or next(model.parameters()).dtype
    shapes = state_shapes(model, spec)
    return tuple(
        torch.zeros(shapes[name], device=device, dtype=dtype if name in FLOAT_STATE else torch.bool)
        for name in STATE_NAMES
    )


def _as_state(tensors: tuple[torch.Tensor, ...]) -> VideoState:
    return VideoState(*tensors)


def _from_state(state: VideoState) -> tuple[torch.Tensor, ...]:
    return tuple(getattr(state, name) for name in STATE_NAMES)


class _FrameGraph(nn.Module):
    """Shared parts: preprocessing in the model's dtype, annotation encoding, finalisation."""

    def __init__(self, model: HodorModel, spec: StreamSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.geometry = spec.geometry

    # uint8 inputs are cast to float32 before any other op: TensorRT takes uint8 tensors only at
    # the network's boundary and in casts, and older releases cast uint8 only to/from float.
    def _features(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = next(self.model.parameters()).dtype
        # Normalisation in float32 before the cast: uint8 pixel values minus means are exact there.
        return self.model.features(preprocess_frame(frame.float(), self.geometry).to(dtype))

    def _annotation(self, f8: torch.Tensor, annotation: torch.Tensor):
        labels = annotation.float()
        masks, annotated = prepare_annotation(labels, self.spec.num_objects, self.geometry)
        return annotate(self.model, f8, masks.to(f8.dtype), annotated)

    def _finish(
        self, scores: torch.Tensor, num_background: int, state: VideoState
    ) -> tuple[torch.Tensor, ...]:
        labels, object_scores = finalize(scores[0].float(), num_background, self.geometry)
        return (labels, object_scores, *_from_state(state))


class InitFrame(_FrameGraph):
    """First annotated frame: (frame uint8 [H, W, 3], annotation uint8 [H, W], *state)
    -> (labels uint8 [H, W], scores float32 [N, H, W], *next state). Runs only the encoder; the
    labels are the annotation as the model keeps it (objects too small at stride 8 dropped)."""

    def forward(self, frame, annotation, fg, fg_valid, bg, bg_valid, active):
        _, f8 = self._features(frame)
        ann = self._annotation(f8, annotation)
        state = _as_state((fg, fg_valid, bg, bg_valid, active))
        state, kept = first_frame(state, ann)
        scores = torch.cat((torch.zeros_like(kept[:, :1]), kept), dim=1)
        return self._finish(scores, 1, state)


class StepFrame(_FrameGraph):
    """A tracked frame without annotation: (frame uint8 [H, W, 3], *state)
    -> (labels uint8 [H, W], scores float32 [N, H, W], *next state)."""

    def forward(self, frame, fg, fg_valid, bg, bg_valid, active):
        f4, f8 = self._features(frame)
        out = step(self.model, _as_state((fg, fg_valid, bg, bg_valid, active)), f4, f8)
        return self._finish(out.probs, 1 + self.model.num_bg, out.state)


class AnnotateFrame(_FrameGraph):
    """A tracked frame with an annotation: (frame uint8 [H, W, 3], annotation uint8 [H, W],
    *state) -> (labels uint8 [H, W], scores float32 [N, H, W], *next state)."""

    def forward(self, frame, annotation, fg, fg_valid, bg, bg_valid, active):
        f4, f8 = self._features(frame)
        ann = self._annotation(f8, annotation)
        out = step(self.model, _as_state((fg, fg_valid, bg, bg_valid, active)), f4, f8, ann)
        return self._finish(out.probs, 1 + self.model.num_bg, out.state)


GRAPH_MODULES: dict[str, type[_FrameGraph]] = {
    "init": InitFrame,
    "step": StepFrame,
    "annotate": AnnotateFrame,
}


def input_names(graph: str) -> tuple[str, ...]:
    """Graph input names in forward order."""
    images = ("frame", "annotation") if graph in ("init", "annotate") else ("frame",)
    return (*images, *STATE_NAMES)


def output_names() -> tuple[str, ...]:
    """Graph output names (the same for every graph)."""
    return ("labels", "scores", *(name + NEXT_SUFFIX for name in STATE_NAMES))
