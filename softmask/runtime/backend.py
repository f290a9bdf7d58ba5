"""The interface every runtime backend implements, and what one frame gives back.

A backend holds one video's state (the descriptor ring buffer and validity flags of
``softmask.export.spec``) on its device and runs one of the per-frame graphs on it:
``init`` (first annotated frame), ``step`` (tracked frame), ``annotate`` (tracked frame with an
annotation). Which graph a frame needs is decided by ``softmask.runtime.stream.VideoStream``, not
by backends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from softmask.export.spec import StreamSpec


@dataclass
class FrameOutput:
    """One frame's result, on the host.

    labels: uint8 [H, W] (0 background, k = object k).
    scores: float32 [N, H, W] per-object scores the argmax compared, or None when the backend was
        created without ``with_scores``.
    active: bool [N], objects tracked after this frame; read back only from ``init`` and
        ``annotate`` (``step`` cannot change it), else None.
    timings: seconds per stage of the call, contiguous and in order (``STAGES``): ``H2D``
        (frame upload), ``compute`` (graph launch and execution, waited for), ``D2H`` (outputs
        download); on GPU backends also ``GPU compute`` (device time from CUDA events, inside
        ``compute``, not added to the sum).
    """

    labels: np.ndarray
    scores: np.ndarray | None = None
    active: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


# The stages of a backend call, in order (trtexec's words where they overlap).
STAGES = ("H2D", "compute", "D2H")


class StageClock:
    """Times contiguous stages: ``mark(stage)`` closes the stage that ran since the last mark, so
    the stages add up to the call's wall time."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now


@runtime_checkable
class Backend(Protocol):
    """One video stream on one device. Frames must arrive in order; ``reset`` starts a new video.

    Attributes:
        name: "torch", "onnxruntime" or "tensorrt".
        device: where the state lives, in words (e.g. "cpu", "cuda:0 (NVIDIA H100)").
        spec: the frame size, object count and window the backend was built for.
        precision: "fp32" or "fp16", the weights' and descriptors' type.
    """

    name: str
    device: str
    spec: StreamSpec
    precision: str

    def reset(self) -> None:
        """Empty the state (no valid descriptor, no active object)."""

    def advance_empty(self) -> None:
        """Advance the ring buffer by one frame without running a graph (a frame before any object
        is tracked; HODOR's window counts frames)."""

    def run(
        self, graph: str, frame: np.ndarray, annotation: np.ndarray | None = None
    ) -> FrameOutput:
        """Run ``graph`` on uint8 frame [H, W, 3] (and uint8 annotation [H, W] for ``init`` and
        ``annotate``), keep the next state, return the frame's output."""

    def read_state(self) -> dict[str, np.ndarray]:
        """A host copy of the state, keyed by ``STATE_NAMES`` (descriptors in the backend's
        dtype, flags bool; shapes as ``state_shapes``). For parity checks, not per-frame use."""

    def write_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the state with host arrays keyed by ``STATE_NAMES`` (cast to the backend's
        dtypes), e.g. to re-run one frame from another backend's state."""
