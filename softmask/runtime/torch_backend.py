"""The reference backend: runs the per-frame graph modules (the model's own per-frame functions)
in PyTorch, state as torch tensors on the model's device. Like a shared-encoder export, each frame
runs the ``features`` module, then the frame's graph module on its maps."""

from __future__ import annotations

import logging

import numpy as np
import torch

from softmask.export.frame_graphs import (
    FEATURES_GRAPH,
    SHARED_GRAPH_MODULES,
    STATE_NAMES,
    StreamSpec,
    empty_state,
)
from softmask.export.spec import FEATURE_NAMES, advance_window, input_names
from softmask.model.hodor import HodorModel
from softmask.runtime.backend import FrameOutput, StageClock

logger = logging.getLogger(__name__)


class TorchBackend:
    """``Backend`` running ``softmask.export.frame_graphs``' shared-encoder modules with ``model``
    (eval mode).

    Args:
        model: the HodorModel; it is put in eval mode and stays on its device.
        spec: frame size, object count, window and resize rule.
        with_scores: also return the float32 [N, H, W] object scores per frame.
        threads: torch's intra-op CPU threads (process-wide; None keeps torch's setting).
    """

    name = "torch"

    def __init__(
        self,
        model: HodorModel,
        spec: StreamSpec,
        with_scores: bool = False,
        threads: int | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.model = model.eval()
        self.spec = spec
        self.with_scores = with_scores
        self._device = next(model.parameters()).device
        self.device = str(self._device)
        self.precision = "fp16" if next(model.parameters()).dtype == torch.float16 else "fp32"
        self._graphs = {
            name: cls(model, spec).eval() for name, cls in SHARED_GRAPH_MODULES.items()
        }
        self._state: tuple[torch.Tensor, ...] = ()
        self.reset()

    def reset(self) -> None:
        self._state = empty_state(self.model, self.spec, device=self._device)

    def advance_empty(self) -> None:
        shifted = advance_window(dict(zip(STATE_NAMES, self._state)))
        self._state = tuple(shifted[n] for n in STATE_NAMES)

    def read_state(self) -> dict[str, np.ndarray]:
        return {n: t.cpu().numpy().copy() for n, t in zip(STATE_NAMES, self._state)}

    def write_state(self, state: dict[str, np.ndarray]) -> None:
        self._state = tuple(
            torch.from_numpy(np.asarray(state[n])).to(device=old.device, dtype=old.dtype)
            for n, old in zip(STATE_NAMES, self._state)
        )

    @torch.no_grad()
    def run(
        self, graph: str, frame: np.ndarray, annotation: np.ndarray | None = None
    ) -> FrameOutput:
        cuda = self._device.type == "cuda"
        clock = StageClock()
        image = torch.from_numpy(np.ascontiguousarray(frame)).to(self._device)
        values = dict(zip(STATE_NAMES, self._state))
        if annotation is not None:
            values["annotation"] = torch.from_numpy(np.ascontiguousarray(annotation)).to(
                self._device
            )
        if cuda:
            torch.cuda.synchronize(self._device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        clock.mark("H2D")
        values.update(zip(FEATURE_NAMES, self._graphs[FEATURES_GRAPH](image)))
        inputs = [values[name] for name in input_names(graph, shared_features=True)]
        labels, scores, *state = self._graphs[graph](*inputs)
        if cuda:
            end.record()
            torch.cuda.synchronize(self._device)
        clock.mark("compute")
        self._state = tuple(state)
        out = FrameOutput(
            labels=labels.cpu().numpy(),
            scores=scores.cpu().numpy() if self.with_scores else None,
            active=None if graph == "step" else state[-1][0].cpu().numpy(),
        )
        clock.mark("D2H")
        out.timings = clock.timings
        if cuda:
            out.timings["GPU compute"] = start.elapsed_time(end) / 1e3
        return out
