"""A ``Backend`` whose per-frame graphs are other models of the same Triton server, called with
business-logic scripting (BLS) from the python backend: state tensors go out as inputs and come
back as the ``*_next`` outputs, and stay where the graph models put them (GPU memory for graphs
on a GPU: renamed through DLPack, never copied to the host). A shared-encoder export's frame runs
two models, ``softmask_features`` then the frame's graph, its maps passed on the same way.

Only usable inside Triton's python backend: ``pb`` is its ``triton_python_backend_utils``. On the
CPU it needs no PyTorch; graphs on a GPU read their labels (and scores) to the host through torch's
DLPack import, the one device copy the python backend's tensors cannot make themselves.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from softmask.errors import BackendUnavailable
from softmask.export.manifest import StreamingExport
from softmask.export.spec import NEXT_SUFFIX, STATE_NAMES, advance_window
from softmask.runtime.backend import FrameOutput
from softmask.serve.protocol import GRAPH_MODELS


def _host(tensor: Any) -> np.ndarray:
    """A pb_utils.Tensor's values as a host array (a view for CPU tensors)."""
    if tensor.is_cpu():
        return tensor.as_numpy()
    import torch  # GPU memory: pb_utils.Tensor has no device-to-host copy of its own

    return torch.from_dlpack(tensor.to_dlpack()).cpu().numpy()


class TritonGraphBackend:
    """``Backend`` running the graphs as models ``softmask_<graph>`` (``GRAPH_MODELS``).

    Args:
        pb: the python backend's utilities module.
        export: the export the graph models were written from (manifest only: shapes, dtypes,
            which graphs run per frame).
        with_scores: also return the float32 [N, H, W] object scores.
        gpu: the graph models run on a GPU: their outputs are requested in GPU memory.
    """

    name = "triton-bls"

    def __init__(self, pb: Any, export: StreamingExport, with_scores: bool, gpu: bool) -> None:
        self._pb = pb
        self.export = export
        self.spec = export.spec
        self.precision = export.precision
        self.with_scores = with_scores
        self.device = "triton graph models on " + ("gpu" if gpu else "cpu")
        self._gpu = gpu
        self._state_infos = export.state_infos()
        self._state: dict[str, Any] = {}
        self.reset()

    def new_stream(self) -> TritonGraphBackend:
        """Another stream calling the same graph models, with its own empty state."""
        other = copy.copy(self)
        other.reset()
        return other

    def _as_input(self, name: str, value: np.ndarray | Any) -> Any:
        """A pb_utils.Tensor named ``name`` holding ``value`` (host array or pb_utils.Tensor), on
        the device it is on."""
        if isinstance(value, np.ndarray):
            return self._pb.Tensor(name, np.ascontiguousarray(value))
        if value.is_cpu():
            # A copy: a response's output memory is not guaranteed past the response's lifetime.
            return self._pb.Tensor(name, value.as_numpy().copy())
        return self._pb.Tensor.from_dlpack(name, value.to_dlpack())

    def reset(self) -> None:
        # Host zeros: Triton moves them to the graph models' device with the first request.
        self._state = {
            name: self._as_input(name, np.zeros(info["shape"], dtype=info["dtype"]))
            for name, info in self._state_infos.items()
        }

    def advance_empty(self) -> None:
        shifted = advance_window({n: _host(self._state[n]) for n in STATE_NAMES})
        self._state = {n: self._as_input(n, shifted[n]) for n in STATE_NAMES}

    def _request(self, graph: str, values: dict[str, Any]) -> dict[str, Any]:
        """Run graph model ``graph`` on the named tensors it takes; its outputs by name."""
        pb = self._pb
        names = [info["name"] for info in self.export.io(graph, "outputs")]
        if not self.with_scores and "scores" in names:
            names.remove("scores")
        options: dict[str, Any] = {}
        if self._gpu:
            options["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_GPU, 0)
        request = pb.InferenceRequest(
            model_name=GRAPH_MODELS[graph],
            inputs=[values[info["name"]] for info in self.export.io(graph, "inputs")],
            requested_output_names=names,
            **options,
        )
        response = request.exec()
        if response.has_error():
            raise BackendUnavailable(
                f"graph model {GRAPH_MODELS[graph]} failed: {response.error().message()}"
            )
        return {name: pb.get_output_tensor_by_name(response, name) for name in names}

    def run(
        self, graph: str, frame: np.ndarray, annotation: np.ndarray | None = None
    ) -> FrameOutput:
        values = {"frame": self._as_input("frame", frame), **self._state}
        if annotation is not None:
            values["annotation"] = self._as_input("annotation", annotation)
        *first, last = self.export.chain(graph)
        for part in first:  # the features graph: its maps go on as the next graph's inputs
            values.update(
                {name: self._as_input(name, t) for name, t in self._request(part, values).items()}
            )
        values.update(self._request(last, values))
        self._state = {n: self._as_input(n, values[n + NEXT_SUFFIX]) for n in STATE_NAMES}
        labels = _host(values["labels"]).copy()
        scores = _host(values["scores"]).copy() if self.with_scores else None
        active = None if graph == "step" else _host(self._state["active"])[0].copy()
        return FrameOutput(labels=labels, scores=scores, active=active)
