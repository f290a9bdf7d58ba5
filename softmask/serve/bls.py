"""A ``Backend`` whose per-frame graphs are other models of the same Triton server, called with
business-logic scripting (BLS) from the python backend: state tensors go out as inputs and come
back as the ``*_next`` outputs, and stay where the graph models put them (GPU memory for graphs
on a GPU: renamed through DLPack, never copied to the host).

Only usable inside Triton's python backend: ``pb`` is its ``triton_python_backend_utils``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from softmask.errors import BackendUnavailable
from softmask.export.frame_graphs import NEXT_SUFFIX, STATE_NAMES
from softmask.export.streaming import StreamingExport
from softmask.model.video import VideoState, push_empty
from softmask.runtime.backend import FrameOutput
from softmask.serve.protocol import GRAPH_MODELS


def _to_torch(tensor: Any) -> torch.Tensor:
    """A pb_utils.Tensor as a torch tensor on its device (zero-copy)."""
    if tensor.is_cpu():
        return torch.from_numpy(tensor.as_numpy())
    return torch.from_dlpack(tensor.to_dlpack())


class TritonGraphBackend:
    """``Backend`` running the graphs as models ``softmask_init`` / ``_step`` / ``_annotate``.

    Args:
        pb: the python backend's utilities module.
        export: the export the graph models were written from (manifest only: shapes, dtypes).
        with_scores: also return the float32 [N, H, W] object scores.
        gpu: the graph models run on a GPU: state outputs are requested in GPU memory.
    """

    name = "triton-bls"

    def __init__(self, pb: Any, export: StreamingExport, with_scores: bool, gpu: bool) -> None:
        self._pb = pb
        self.spec = export.spec
        self.precision = export.precision
        self.with_scores = with_scores
        self.device = "triton graph models on " + ("gpu" if gpu else "cpu")
        self._gpu = gpu
        self._state_infos = {
            info["name"]: info for info in export.io("step", "inputs") if info["name"] in STATE_NAMES
        }
        self._outputs = ["labels", *(["scores"] if with_scores else []),
                         *(n + NEXT_SUFFIX for n in STATE_NAMES)]
        self._state: dict[str, Any] = {}
        self.reset()

    def new_stream(self) -> TritonGraphBackend:
        """Another stream calling the same graph models, with its own empty state."""
        other = copy.copy(self)
        other.reset()
        return other

    def _as_input(self, name: str, value: torch.Tensor | Any) -> Any:
        """A pb_utils.Tensor named ``name`` holding ``value`` (torch tensor or pb_utils.Tensor),
        on the device it is on."""
        if not isinstance(value, torch.Tensor):
            value = _to_torch(value)
        if value.device.type == "cpu":
            # A copy: a response's output memory is not guaranteed past the response's lifetime.
            return self._pb.Tensor(name, value.numpy().copy())
        return self._pb.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(value.contiguous()))

    def reset(self) -> None:
        device = "cuda" if self._gpu else "cpu"
        self._state = {
            name: self._as_input(
                name,
                torch.from_numpy(np.zeros(info["shape"], dtype=info["dtype"])).to(device),
            )
            for name, info in self._state_infos.items()
        }

    def advance_empty(self) -> None:
        host = VideoState(*(_to_torch(self._state[n]) for n in STATE_NAMES))
        shifted = push_empty(host)
        self._state = {n: self._as_input(n, getattr(shifted, n)) for n in STATE_NAMES}

    def run(
        self, graph: str, frame: np.ndarray, annotation: np.ndarray | None = None
    ) -> FrameOutput:
        pb = self._pb
        inputs = [pb.Tensor("frame", np.ascontiguousarray(frame))]
        if annotation is not None:
            inputs.append(pb.Tensor("annotation", np.ascontiguousarray(annotation)))
        inputs += [self._state[n] for n in STATE_NAMES]
        options: dict[str, Any] = {}
        if self._gpu:
            options["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_GPU, 0)
        request = pb.InferenceRequest(
            model_name=GRAPH_MODELS[graph],
            inputs=inputs,
            requested_output_names=self._outputs,
            **options,
        )
        response = request.exec()
        if response.has_error():
            raise BackendUnavailable(
                f"graph model {GRAPH_MODELS[graph]} failed: {response.error().message()}"
            )

        def output(name: str) -> Any:
            return pb.get_output_tensor_by_name(response, name)

        self._state = {n: self._as_input(n, output(n + NEXT_SUFFIX)) for n in STATE_NAMES}
        labels = _to_torch(output("labels")).cpu().numpy()
        scores = _to_torch(output("scores")).cpu().numpy() if self.with_scores else None
        active = None
        if graph != "step":
            active = _to_torch(self._state["active"]).cpu().numpy()[0]
        return FrameOutput(labels=labels, scores=scores, active=active)
