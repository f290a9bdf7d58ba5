"""The streaming graphs' contract, without PyTorch: what one export is fixed to (``StreamSpec``),
the names of its graphs, inputs, outputs and state, and the one state update a runtime does on its
own (``advance_window``). ``softmask.export.frame_graphs`` builds the graphs to this contract;
backends of a deployment install (no torch) read it from here.

The state is ``softmask.model.video.VideoState``'s five tensors, in ``STATE_NAMES`` order:
fg [1, N, W, C], fg_valid [1, N, W] bool, bg [1, Qb, W, C], bg_valid [1, Qb, W] bool, active [1, N]
bool. Descriptors are in the model's dtype (float16 in an fp16 export).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from softmask.errors import InputError
from softmask.model.geometry import FrameGeometry, frame_geometry

# The per-frame graphs a runtime chooses between (``softmask.runtime.stream.VideoStream``).
GRAPH_NAMES = ("init", "step", "annotate")
# The frame encoder's graph (backbone + FPN: uint8 frame -> stride-4 and stride-8 maps), which
# the per-frame graphs of a shared-encoder export consume instead of the frame.
FEATURES_GRAPH = "features"
FEATURE_NAMES = ("f4", "f8")
# Every graph file of a shared-encoder export, in the order they are exported.
SHARED_GRAPHS = (FEATURES_GRAPH, *GRAPH_NAMES)
STATE_NAMES = ("fg", "fg_valid", "bg", "bg_valid", "active")
# State tensors holding descriptors (the model's dtype); the others are bool flags.
FLOAT_STATE = ("fg", "bg")
# Graph outputs carrying the next state are named "<state name>_next".
NEXT_SUFFIX = "_next"
# State tensors with a window axis (axis 2), which ``advance_window`` shifts.
WINDOWED_STATE = ("fg", "fg_valid", "bg", "bg_valid")


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


def input_names(graph: str, shared_features: bool = False) -> tuple[str, ...]:
    """Input names of ``graph`` in forward order: the frame (or, with ``shared_features``, what
    the features graph made of it), the annotation (``init``, ``annotate``), the state.
    ``init`` uses only the stride-8 map."""
    if graph == FEATURES_GRAPH:
        return ("frame",)
    if not shared_features:
        images: tuple[str, ...] = ("frame",)
    else:
        images = FEATURE_NAMES[1:] if graph == "init" else FEATURE_NAMES
    if graph in ("init", "annotate"):
        images = (*images, "annotation")
    return (*images, *STATE_NAMES)


def output_names(graph: str = "step") -> tuple[str, ...]:
    """Output names of ``graph``: the features graph's maps, or (every per-frame graph) labels,
    scores and the next state."""
    if graph == FEATURES_GRAPH:
        return FEATURE_NAMES
    return ("labels", "scores", *(name + NEXT_SUFFIX for name in STATE_NAMES))


Array = TypeVar("Array")


def advance_window(state: Mapping[str, Array]) -> dict[str, Array]:
    """The state after one frame that adds no descriptor: the window (axis 2) moves by one, the
    oldest frame dropped and an empty newest frame (zeros, not valid) appended; ``active`` kept.

    ``state``: the five tensors keyed by ``STATE_NAMES``, numpy arrays or torch tensors alike (on
    any device), so every runtime shifts its state with this one function.
    """
    shifted = dict(state)
    for name in WINDOWED_STATE:
        window = state[name].shape[2]
        moved = state[name][:, :, [*range(1, window), 0]]  # a copy, on the state's device
        moved[:, :, -1] = 0
        shifted[name] = moved
    return shifted
