"""The per-frame streaming graphs as torch modules: what ``export_streaming`` exports and what
``softmask.runtime.TorchBackend`` runs. Names, ``StreamSpec`` and the state's layout are the
torch-free contract of ``softmask.export.spec``.

Each module is one frame of HODOR's video loop (``softmask.model.video``) with pre- and
post-processing inside, for one fixed frame size, object count N and window W (batch 1):

    uint8 frame [H, W, 3] (+ uint8 annotation [H, W]) + state  ->  uint8 labels [H, W],
    float32 object scores [N, H, W], next state

| graph | used on | model calls |
| --- | --- | --- |
| ``init`` | the first frame whose annotation gives a trackable object | features, annotate, first_frame |
| ``step`` | every later frame without an annotation | features, step |
| ``annotate`` | a later frame with an annotation (new or re-annotated objects) | features, annotate, step |

A shared-encoder export (``SHARED_GRAPH_MODULES``, the default) holds the frame encoder (backbone +
FPN, most of the weights) once: the ``features`` graph maps the frame to its stride-4 and stride-8
maps ``f4`` [1, C, Hp/4, Wp/4] and ``f8`` [1, C, Hp/8, Wp/8], which ``init`` (``f8`` only),
``step`` and ``annotate`` take instead of the frame. Same functions, split at that boundary.

Frames before the first annotation run no graph: their labels are zeros, and the runtime advances
the ring buffer (``softmask.export.spec.advance_window``).

The state is ``VideoState``'s five tensors, in ``STATE_NAMES`` order (shapes in ``state_shapes``):
fg [1, N, W, C], fg_valid [1, N, W] bool, bg [1, Qb, W, C], bg_valid [1, Qb, W] bool, active [1, N]
bool. Descriptors are in the model's dtype (float16 in an fp16 export).
"""

from __future__ import annotations

import torch
from torch import nn

from softmask.export.spec import (  # noqa: F401 (the contract's names, re-exported)
    FEATURES_GRAPH,
    FLOAT_STATE,
    GRAPH_NAMES,
    NEXT_SUFFIX,
    STATE_NAMES,
    StreamSpec,
    input_names,
    output_names,
)
from softmask.model.geometry import FrameGeometry
from softmask.model.hodor import HodorModel
from softmask.model.video import (
    VideoState,
    annotate,
    finalize,
    first_frame,
    prepare_annotation,
    preprocess_frame,
    step,
)


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

    def _features(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return frame_features(self.model, self.geometry, frame)

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
        return self.from_features(f8, annotation, fg, fg_valid, bg, bg_valid, active)

    def from_features(self, f8, annotation, fg, fg_valid, bg, bg_valid, active):
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
        return self.from_features(f4, f8, fg, fg_valid, bg, bg_valid, active)

    def from_features(self, f4, f8, fg, fg_valid, bg, bg_valid, active):
        out = step(self.model, _as_state((fg, fg_valid, bg, bg_valid, active)), f4, f8)
        return self._finish(out.probs, 1 + self.model.num_bg, out.state)


class AnnotateFrame(_FrameGraph):
    """A tracked frame with an annotation: (frame uint8 [H, W, 3], annotation uint8 [H, W],
    *state) -> (labels uint8 [H, W], scores float32 [N, H, W], *next state)."""

    def forward(self, frame, annotation, fg, fg_valid, bg, bg_valid, active):
        f4, f8 = self._features(frame)
        return self.from_features(f4, f8, annotation, fg, fg_valid, bg, bg_valid, active)

    def from_features(self, f4, f8, annotation, fg, fg_valid, bg, bg_valid, active):
        ann = self._annotation(f8, annotation)
        out = step(self.model, _as_state((fg, fg_valid, bg, bg_valid, active)), f4, f8, ann)
        return self._finish(out.probs, 1 + self.model.num_bg, out.state)


class FeaturesGraph(_FrameGraph):
    """The frame encoder: frame uint8 [H, W, 3] -> (f4 [1, C, Hp/4, Wp/4], f8 [1, C, Hp/8, Wp/8])
    in the feature extractor's dtype."""

    def forward(self, frame):
        return self._features(frame)


class InitFromFeatures(InitFrame):
    """``InitFrame`` after ``FeaturesGraph``: (f8, annotation, *state) -> the same outputs."""

    def forward(self, f8, annotation, fg, fg_valid, bg, bg_valid, active):
        return self.from_features(f8, annotation, fg, fg_valid, bg, bg_valid, active)


class StepFromFeatures(StepFrame):
    """``StepFrame`` after ``FeaturesGraph``: (f4, f8, *state) -> the same outputs."""

    def forward(self, f4, f8, fg, fg_valid, bg, bg_valid, active):
        return self.from_features(f4, f8, fg, fg_valid, bg, bg_valid, active)


class AnnotateFromFeatures(AnnotateFrame):
    """``AnnotateFrame`` after ``FeaturesGraph``: (f4, f8, annotation, *state) -> the same
    outputs."""

    def forward(self, f4, f8, annotation, fg, fg_valid, bg, bg_valid, active):
        return self.from_features(f4, f8, annotation, fg, fg_valid, bg, bg_valid, active)


def frame_features(
    model: HodorModel, geometry: FrameGeometry, frame: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frame [H, W, 3] -> the model's stride-4 and stride-8 maps of it."""
    # uint8 inputs are cast to float32 before any other op: TensorRT takes uint8 tensors only at
    # the network's boundary and in casts, and older releases cast uint8 only to/from float.
    dtype = next(model.parameters()).dtype
    # Normalisation in float32 before the cast: uint8 pixel values minus means are exact there.
    return model.features(preprocess_frame(frame.float(), geometry).to(dtype))


# Self-contained graphs: each runs the frame encoder itself (format version 1 exports).
GRAPH_MODULES: dict[str, type[_FrameGraph]] = {
    "init": InitFrame,
    "step": StepFrame,
    "annotate": AnnotateFrame,
}
# A shared-encoder export: ``features`` once per frame, then the frame's graph.
SHARED_GRAPH_MODULES: dict[str, type[_FrameGraph]] = {
    FEATURES_GRAPH: FeaturesGraph,
    "init": InitFromFeatures,
    "step": StepFromFeatures,
    "annotate": AnnotateFromFeatures,
}
