"""Named intermediate outputs ("probes") of one per-frame graph, for localising a divergence.

``ProbeRecorder`` puts forward hooks on chosen modules of a model and records each call's output
tensors in execution order, labelled by module path (``encoder.attn_layers.1.cross_attn``; a
second call of the same module in one frame gets ``#2``; a module returning several tensors gets
``[i]``; ``path:in<i>`` records the i-th input instead). In eager mode that is how the reference is probed. ``export_probed_graph`` exports one
frame graph with the recorded tensors appended as extra outputs ``probe_0``, ``probe_1``, ... and
returns their labels, so a runtime computes exactly the graph it deploys plus these outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from softmask.errors import ExportError
from softmask.export.frame_graphs import GRAPH_MODULES, StreamSpec, input_names, output_names
from softmask.export.mixed_precision import PrecisionPlan, mixed_precision_model
from softmask.export.onnx_export import export_onnx
from softmask.export.streaming import example_inputs, graph_metadata
from softmask.model.hodor import HodorModel

logger = logging.getLogger(__name__)

PROBE_PREFIX = "probe_"
# "<module path>:in<i>" probes the module's i-th positional input instead of its output.
INPUT_MARK = ":in"
_ENCODER_PARTS = ("self_attn", "norm1", "cross_attn", "norm2", "ffn", "norm3")
_DECODER_LAYER_PARTS = ("self_attn_conv_substitute", "cross_attn", "norm1", "fc2", "norm2")
_DECODER_HEADS = ("conv_4x_reduce", "conv_4x", "catch_all_conv")


def probe_points(model: HodorModel) -> list[str]:
    """Module paths probed by default: the backbone's output, the first encoder layer's inputs
    ``:in0`` (initial descriptors, thresholded means of the masked features) and ``:in4`` (the soft
    masks), each encoder layer's parts (its self-attention, soft-masked attention, FFN and
    norms), each decoder layer's parts, the decoder's heads and its logits."""
    points = ["feature_extractor", "encoder.attn_layers.0:in0", "encoder.attn_layers.0:in4"]
    for i in range(len(model.encoder.attn_layers)):
        points += [f"encoder.attn_layers.{i}.{part}" for part in _ENCODER_PARTS]
    for i in range(len(model.decoder.attn_layers)):
        points += [f"decoder.attn_layers.{i}.{part}" for part in _DECODER_LAYER_PARTS]
    points += [f"decoder.{head}" for head in _DECODER_HEADS]
    points.append("decoder")
    return points


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


class ProbeRecorder:
    """Forward hooks on ``paths`` of ``model`` recording outputs in call order.

    ``labels`` and ``tensors`` hold the calls since the last ``clear``; ``remove`` takes the
    hooks off.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        self.labels: list[str] = []
        self.tensors: list[torch.Tensor] = []
        self._calls: dict[str, int] = {}
        self._handles = []
        for path in paths:
            module_path, _, port = path.partition(INPUT_MARK)
            module = model.get_submodule(module_path)
            if port:
                handle = module.register_forward_pre_hook(self._input_hook(path, int(port)))
            else:
                handle = module.register_forward_hook(self._output_hook(path))
            self._handles.append(handle)

    def _record(self, path: str, value) -> None:
        self._calls[path] = self._calls.get(path, 0) + 1
        call = self._calls[path]
        label = path if call == 1 else f"{path}#{call}"
        tensors = _tensors(value)
        for i, tensor in enumerate(tensors):
            self.labels.append(label if len(tensors) == 1 else f"{label}[{i}]")
            self.tensors.append(tensor)

    def _output_hook(self, path: str):
        def hook(module, args, output):
            self._record(path, output)

        return hook

    def _input_hook(self, path: str, index: int):
        def hook(module, args):
            self._record(path, args[index])

        return hook

    def clear(self) -> None:
        self.labels, self.tensors, self._calls = [], [], {}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class ProbedGraph(nn.Module):
    """A frame graph module whose outputs are followed by the recorder's tensors."""

    def __init__(self, graph: nn.Module, recorder: ProbeRecorder) -> None:
        super().__init__()
        self.frame_graph = graph
        self.recorder = recorder

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.recorder.clear()
        outputs = self.frame_graph(*inputs)
        return (*outputs, *self.recorder.tensors)


@torch.no_grad()
def export_probed_graph(
    model: HodorModel,
    spec: StreamSpec,
    graph: str,
    path: str | Path,
    plan: PrecisionPlan,
    paths: Sequence[str] | None = None,
) -> list[str]:
    """Export ``graph`` of ``model`` in ``plan``'s precision with probe outputs added.

    Returns the probe labels: output ``probe_<i>`` holds the i-th label's tensor (in the dtype
    the graph computes it in). The regular outputs come first, named as in every export.
    """
    mixed = mixed_precision_model(model, plan)
    recorder = ProbeRecorder(mixed, paths or probe_points(model))
    module = ProbedGraph(GRAPH_MODULES[graph](mixed, spec).eval(), recorder).eval()
    inputs = example_inputs(model, spec, graph, plan.state_dtype)
    module(*inputs)  # one eager run names the probes
    labels = list(recorder.labels)
    export_onnx(
        module,
        inputs,
        path,
        input_names=input_names(graph),
        output_names=[*output_names(), *(f"{PROBE_PREFIX}{i}" for i in range(len(labels)))],
        metadata={**graph_metadata(model, spec, plan, graph), "softmask.probes": ",".join(labels)},
    )
    traced = list(recorder.labels)
    recorder.remove()
    if traced != labels:
        raise ExportError(
            f"probes of graph {graph!r} were recorded in another order while exporting "
            f"({len(traced)} vs {len(labels)} outputs); the probe outputs cannot be named"
        )
    logger.info("exported %s (%s) with %d probes -> %s", graph, plan.name, len(labels), path)
    return labels
