"""The interface every runtime backend implements, and what one frame gives back.

A backend holds one video's state (the descriptor ring buffer and validity flags of
``softmask.export.frame_graphs``) on its device and runs one of the per-frame graphs on it:
``init`` (first annotated frame), ``step`` (tracked frame), ``annotate`` (tracked frame with an
annotation). Which graph a frame needs is decided by ``softmask.runtime.stream.VideoStream``, not
by backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from softmask.export.frame_graphs import StreamSpec


@dataclass
class FrameOutput:
    """One frame's result, on the host.

    labels: uint8 [H, W] (0 background, k = object k).
    scores: float32 [N, H, W] per-object scores the argmax compared, or None when the backend was
        created without ``with_scores``.
    active: bool [N], objects tracked after this frame; read back only from ``init`` and
        ``annotate`` (``step`` cannot change it), else None.
    """

    labels: np.ndarray
    scores: np.ndarray | None = None
    active: np.ndarray | None = None


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
