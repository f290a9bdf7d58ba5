"""One video through one backend, frame by frame: which graph each frame needs.

| tracking an object? | annotation on this frame? | graph | labels |
| --- | --- | --- | --- |
| no | no | none (ring buffer advances) | all 0 |
| no | yes | ``init`` | the annotation as the model keeps it |
| yes | no | ``step`` | predicted |
| yes | yes | ``annotate`` | predicted, annotated objects overridden |

"Tracking" becomes true once an ``init`` keeps at least one object (objects too small to survive
stride 8 are dropped, as HODOR drops them). This is the same decision ``segment_video`` makes.
"""

from __future__ import annotations

import numpy as np

from softmask.errors import InputError
from softmask.runtime.backend import Backend, FrameOutput


def check_frame(frame: np.ndarray, height: int, width: int, source: str) -> None:
    """Raise InputError (naming ``source``) unless frame is uint8 [height, width, 3]."""
    if frame.dtype != np.uint8 or frame.shape != (height, width, 3):
        raise InputError(
            f"{source}: frame must be uint8 [{height}, {width}, 3] (the size the backend was "
            f"built for), got {frame.dtype} {list(frame.shape)}"
        )


def check_annotation(
    annotation: np.ndarray, height: int, width: int, num_objects: int, source: str
) -> None:
    """Raise InputError (naming ``source``) unless annotation is uint8 [height, width] with object
    ids in 0..num_objects."""
    if annotation.dtype != np.uint8 or annotation.shape != (height, width):
        raise InputError(
            f"{source}: annotation must be a uint8 label map [{height}, {width}], got "
            f"{annotation.dtype} {list(annotation.shape)}"
        )
    unknown = sorted(int(v) for v in np.unique(annotation) if v > num_objects)
    if unknown:
        raise InputError(
            f"{source}: object id(s) {unknown} exceed the {num_objects} object slot(s) the "
            f"backend was built for (export with num_objects >= {max(unknown)})"
        )


class VideoStream:
    """Feeds one video's frames, in order, to ``backend``; ``last_graph`` names the graph the last
    frame ran ("none" for frames before the first tracked object)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.tracking = False
        self.last_graph = "none"
        backend.reset()

    def process(
        self,
        frame: np.ndarray,
        annotation: np.ndarray | None = None,
        source: str = "frame",
        annotation_source: str | None = None,
    ) -> FrameOutput:
        """Segment the next frame (uint8 [H, W, 3]; annotation uint8 [H, W] or None).

        Raises:
            InputError: wrong frame/annotation size or dtype, or an object id above N; the message
                starts with ``source`` (e.g. the frame's file) or ``annotation_source`` (the
                annotation's file; default ``source``).
        """
        spec = self.backend.spec
        check_frame(frame, spec.height, spec.width, source)
        if annotation is not None:
            check_annotation(
                annotation, spec.height, spec.width, spec.num_objects, annotation_source or source
            )
            if not annotation.any():
                annotation = None  # a map without objects annotates nothing
        if not self.tracking and annotation is None:
            self.backend.advance_empty()
            self.last_graph = "none"
            return self._empty_output()
        if not self.tracking:
            graph = "init"
        else:
            graph = "step" if annotation is None else "annotate"
        out = self.backend.run(graph, frame, annotation)
        if out.active is not None:
            self.tracking = bool(out.active.any())
        self.last_graph = graph
        return out

    def _empty_output(self) -> FrameOutput:
        spec = self.backend.spec
        labels = np.zeros((spec.height, spec.width), np.uint8)
        scores = None
        if getattr(self.backend, "with_scores", False):
            scores = np.zeros((spec.num_objects, spec.height, spec.width), np.float32)
        return FrameOutput(labels, scores)
