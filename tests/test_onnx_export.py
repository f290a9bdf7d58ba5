"""ONNX export: one custom node per call, function bodies, ONNX Runtime parity with PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import as_float64, make_inputs
from torch.export import Dim

from softmask.errors import ExportError
from softmask.export import export_onnx
from softmask.ops import SoftMaskedAttention, onnx_op, reference

INPUT_ORDER = ("query", "key", "value", "mask", "alpha", "key_padding_mask")


class TwoLayers(torch.nn.Module):
    """Two soft-masked attention layers: the second without key padding."""

    def __init__(self, embed: int, heads: int) -> None:
        super().__init__()
        self.first = SoftMaskedAttention(embed, heads)
        self.second = SoftMaskedAttention(embed, heads)
        with torch.no_grad():
            self.second.scaling_factors.copy_(torch.linspace(1.0, 20.0, heads))

    def forward(self, x, memory, mask, key_padding_mask):
        x = x + self.first(x, memory, memory, mask, key_padding_mask)
        return self.second(x, memory, memory, mask)


def _dynamic():
    b, i, s = Dim("batch"), Dim("queries"), Dim("keys")
    return ({0: b, 1: i}, {0: b, 1: s}, {0: b, 1: i, 2: s}, {0: b, 1: s})


def _module_inputs(batch, queries, keys, embed, padding="rows", seed=0):
    g = torch.Generator().manual_seed(seed)
    kpm = torch.rand(batch, keys, generator=g) < 0.3
    kpm[:, 0] = False
    if padding == "rows" and batch > 1:
        kpm[-1] = True
    return (torch.randn(batch, queries, embed, generator=g),
            torch.randn(batch, keys, embed, generator=g),
            torch.rand(batch, queries, keys, generator=g), kpm)


@pytest.fixture(scope="module", params=[(256, 8), (64, 2)], ids=["E256H8", "E64H2"])
def exported(request, tmp_path_factory):
    embed, heads = request.param
    torch.manual_seed(embed)
    module = TwoLayers(embed, heads).eval()
    path = tmp_path_factory.mktemp("onnx") / f"two_layers_{embed}.onnx"
    export_onnx(module, _module_inputs(2, 3, 10, embed), path, dynamic_shapes=_dynamic())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return module, path, session, embed, heads


def _run(session, inputs):
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return session.run(None, feed)[0]


def test_one_custom_node_per_call_with_plugin_attributes(exported):
    _, path, _, _, heads = exported
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "SoftMaskedAttention"]
    assert len(nodes) == 2
    for node in nodes:
        assert node.domain == "trt.plugins"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        # num_splits = 0 (auto): the plugin creator lists it, and TensorRT's parser warns for a
        # listed field the node lacks.
        assert attrs == {"num_heads": heads, "num_splits": 0, "plugin_version": b"1",
                         "plugin_namespace": b""}
        kinds = {a.name: a.type for a in node.attribute}
        assert kinds["num_heads"] == kinds["num_splits"] == onnx.AttributeProto.INT
    assert [len(n.input) for n in nodes] == [6, 5]
    assert nodes[0].overload == onnx_op.PADDED_OVERLOAD and nodes[1].overload == ""
    functions = {(f.domain, f.name, f.overload): f for f in model.functions}
    assert set(functions) == {("trt.plugins", "SoftMaskedAttention", ""),
                              ("trt.plugins", "SoftMaskedAttention", onnx_op.PADDED_OVERLOAD)}
    body_domains = {n.domain for f in functions.values() for n in f.node}
    assert body_domains == {""}, "function bodies must use standard ops only"
    assert {o.domain: o.version for o in model.opset_import}["trt.plugins"] == 1
    onnx.checker.check_model(model, full_check=True)


def test_batch_queries_and_keys_stay_dynamic(exported):
    _, path, _, _, _ = exported
    model = onnx.load(str(path))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input}
    x, memory, mask, kpm = (dims[n] for n in ("x", "memory", "mask", "key_padding_mask"))
    assert all(isinstance(d, str) for d in (x[0], x[1], memory[1], mask[2], kpm[1]))
    assert x[0] == memory[0] == mask[0] and x[1] == mask[1] and memory[1] == mask[2] == kpm[1]


@pytest.mark.parametrize(
    "batch,queries,keys",
    [(2, 3, 10), (1, 1, 1), (3, 1, 17), (2, 40, 1), (4, 9, 64), (1, 13, 300)],
)
def test_onnxruntime_matches_pytorch(exported, batch, queries, keys):
    module, _, session, embed, _ = exported
    inputs = _module_inputs(batch, queries, keys, embed, seed=keys)
    with torch.no_grad():
        want = module(*inputs).numpy()
    got = _run(session, inputs)
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() < 1e-5


def test_fully_padded_rows_are_zero_in_onnxruntime():
    inputs = make_inputs(3, 4, 9, 16, 2, padding="rows", seed=8)
    session = ort.InferenceSession(onnx_op.standalone_model(2, True).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {n: (inputs[n].numpy()) for n in INPUT_ORDER})[0]
    assert np.count_nonzero(out[0]) == 0
    want = reference.soft_masked_attention(**as_float64(inputs)).numpy()
    assert np.abs(out - want).max() < 1e-5


def test_fp16_export_within_2e_3(tmp_path):
    torch.manual_seed(1)
    module = TwoLayers(64, 2).eval()
    path = export_onnx(module, _module_inputs(2, 3, 10, 64), tmp_path / "fp16.onnx",
                       dynamic_shapes=_dynamic(), fp16=True)
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = _module_inputs(3, 5, 37, 64, seed=2)
    feed = {i.name: (t.half() if t.is_floating_point() else t).numpy()
            for i, t in zip(session.get_inputs(), inputs)}
    got = session.run(None, feed)[0]
    assert got.dtype == np.float16
    with torch.no_grad():
        want = module(*inputs).numpy()
    assert np.abs(got.astype(np.float32) - want).max() < 2e-3


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 3),
    queries=st.integers(1, 8),
    keys=st.integers(1, 48),
    heads=st.sampled_from([1, 2, 8]),
    head_dim=st.sampled_from([4, 32]),
    padding=st.sampled_from(["none", "some", "rows"]),
    binary=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_function_body_matches_reference(batch, queries, keys, heads, head_dim, padding,
                                                  binary, seed):
    inputs = make_inputs(batch, queries, keys, heads * head_dim, heads, padding=padding,
                         seed=seed, binary_mask=binary)
    with_padding = inputs["key_padding_mask"] is not None
    session = _standalone_session(heads, with_padding)
    names = INPUT_ORDER if with_padding else INPUT_ORDER[:5]
    got = session.run(None, {n: inputs[n].numpy() for n in names})[0]
    want = reference.soft_masked_attention(**as_float64(inputs)).numpy()
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


_SESSIONS: dict = {}


def _standalone_session(heads: int, with_padding: bool) -> ort.InferenceSession:
    key = (heads, with_padding)
    if key not in _SESSIONS:
        model = onnx_op.standalone_model(heads, with_padding)
        _SESSIONS[key] = ort.InferenceSession(model.SerializeToString(),
                                              providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def test_standalone_model_passes_full_check():
    for padded in (False, True):
        onnx.checker.check_model(onnx_op.standalone_model(8, padded), full_check=True)


def test_strip_function_bodies_keeps_nodes(exported):
    _, path, _, _, _ = exported
    model = onnx.load(str(path))
    assert onnx_op.strip_function_bodies(model) == 2
    assert not model.functions
    assert sum(n.op_type == "SoftMaskedAttention" for n in model.graph.node) == 2
    assert all(n.overload == "" for n in model.graph.node)


def test_export_failure_is_an_export_error(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return x.nonzero().numel() * torch.linalg.eig(x.reshape(2, 2))[0].real

    with pytest.raises(ExportError, match="Broken"):
        export_onnx(Broken(), (torch.randn(4),), tmp_path / "broken.onnx")
    assert not (tmp_path / "broken.onnx").exists()
