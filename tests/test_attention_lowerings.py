"""``softmask export --attention plugin|function|onnx-attention``: the three ONNX forms of the
op give the same masks in ONNX Runtime (CPU) on a synthetic video, and each graph holds what its
lowering says (the custom node, only standard ops, or ONNX's Attention op at opset 23)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from softmask.errors import InputError
from softmask.export.streaming import export_streaming
from softmask.ops.onnx_lowering import ATTENTION_LOWERINGS
from softmask.ops.onnx_op import OP_TYPE
from softmask.runtime import OnnxRuntimeBackend, VideoStream
from tests.videos import first_annotation, moving_objects

H, W, N, WINDOW, T = 64, 96, 3, 3, 8


@pytest.fixture(scope="module")
def exports(shared_export):
    return {a: shared_export(H, W, N, WINDOW, min_dim=48, attention=a) for a in ATTENTION_LOWERINGS}


def test_each_lowering_writes_its_form_of_the_op(exports):
    for attention, export in exports.items():
        for name, path in export.graphs.items():
            model = onnx.load(str(path))
            ops = [n.op_type for n in model.graph.node]
            props = {p.key: p.value for p in model.metadata_props}
            if name == "features":  # the frame encoder holds no attention to lower
                assert OP_TYPE not in ops and "Attention" not in ops, attention
                assert export.manifest["graphs"][name]["op_nodes"] == 0
                continue
            if attention == "plugin":
                assert OP_TYPE in ops and model.functions
                assert export.manifest["graphs"][name]["op_nodes"] == ops.count(OP_TYPE)
                continue
            assert OP_TYPE not in ops and not model.functions, (attention, name)
            assert props["softmask.attention"] == attention
            assert export.manifest["graphs"][name]["op_nodes"] == 0
            attention_ops = ops.count("Attention")
            if attention == "onnx-attention":
                assert attention_ops == exports["plugin"].manifest["graphs"][name]["op_nodes"] > 0
                opset = {o.domain: o.version for o in model.opset_import}[""]
                assert opset >= 23
            else:
                assert attention_ops == 0


def test_the_three_lowerings_give_the_same_masks(exports):
    frames = moving_objects(T, H, W, seed=3)
    annotation = first_annotation(H, W)
    labels = {}
    for attention, export in exports.items():
        stream = VideoStream(OnnxRuntimeBackend(export, providers=["CPUExecutionProvider"]))
        labels[attention] = np.stack([
            stream.process(frame, annotation if t == 0 else None).labels
            for t, frame in enumerate(frames)])
    assert labels["plugin"][1:].any()  # something is tracked
    for attention in ("function", "onnx-attention"):
        agreement = (labels[attention] == labels["plugin"]).mean()
        assert agreement >= 0.999, (attention, agreement)


def test_an_unknown_lowering_is_refused_before_exporting(model, tmp_path):
    with pytest.raises(InputError, match="--attention fused: choose one of"):
        export_streaming(model, tmp_path / "x", H, W, N, WINDOW, attention="fused")
    assert not (tmp_path / "x").exists()
