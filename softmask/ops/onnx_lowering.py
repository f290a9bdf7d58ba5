"""Other ONNX forms of the op, for runtimes without the plugin (``softmask export --attention``).

| lowering | each SoftMaskedAttention node becomes | who runs it |
| --- | --- | --- |
| ``plugin`` | itself: the custom node, with its function body (onnx_op.py) | TensorRT with the plugin; any ONNX runtime through the body |
| ``function`` | its function body's standard ops, inlined; no custom node | any ONNX runtime, TensorRT without a plugin |
| ``onnx-attention`` | the standard ``Attention`` op (opset 23), the soft mask as its additive mask | TensorRT >= 10.14 (its own fused attention layer), ONNX Runtime |

The additive mask of ``onnx-attention`` is the op's mask term, -alpha_h * (1 - M[b, i, s]) per
head (softmask/ops/reference.py), built in float32 as [B, H, I, S] and cast to the attention's
type; fp16 graphs run the softmax in float32 (``softmax_precision``), as the kernel does. Key
padding is not lowered to ``Attention`` (the streaming graphs have none): such a node is an
ExportError.
"""

from __future__ import annotations

import onnx
import onnx.inliner
import onnx.version_converter
from onnx import TensorProto, helper

from softmask.errors import ExportError
from softmask.ops.onnx_op import DOMAIN, OP_TYPE, is_hard, register_schema

ATTENTION_LOWERINGS = ("plugin", "function", "onnx-attention")
ATTENTION_OPSET = 23
OP_NODES_KEY = "softmask.op_nodes"
LOWERING_KEY = "softmask.attention"


def lower_attention(model: onnx.ModelProto, attention: str) -> onnx.ModelProto:
    """``model`` with its SoftMaskedAttention nodes in the form ``attention`` (module docstring);
    "plugin" returns it unchanged. The metadata records the lowering and the custom nodes left
    (``softmask.op_nodes``: 0 after a lowering).

    Raises:
        ExportError: unknown lowering, a key-padded node for ``onnx-attention``, or a result
            that fails ``onnx.checker``.
    """
    if attention not in ATTENTION_LOWERINGS:
        raise ExportError(f"unknown attention lowering {attention!r}; choose one of "
                          f"{list(ATTENTION_LOWERINGS)}")
    if attention == "plugin":
        return model
    if attention == "function":
        lowered = onnx.inliner.inline_selected_functions(model, [(DOMAIN, OP_TYPE)])
    else:
        lowered = _to_onnx_attention(model)
    kept = [f for f in lowered.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del lowered.functions[:]
    lowered.functions.extend(kept)
    imports = [o for o in lowered.opset_import if o.domain != DOMAIN]
    del lowered.opset_import[:]
    lowered.opset_import.extend(imports)
    _set_metadata(lowered, {OP_NODES_KEY: "0", LOWERING_KEY: attention})
    try:
        onnx.checker.check_model(lowered)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the {attention} lowering is not valid ONNX: {error}") from error
    return lowered


def _set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props.update(values)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.input, *graph.output, *graph.value_info]
        if v.type.HasField("tensor_type")
    } | {t.name: t.data_type for t in graph.initializer}


def _attention_nodes(node: onnx.NodeProto, query_type: int) -> list[onnx.NodeProto]:
    """One SoftMaskedAttention node as Attention with the soft mask as additive mask."""
    if len(node.input) > 5 and node.input[5]:
        raise ExportError(f"node {node.name!r} has a key_padding_mask; the onnx-attention "
                          "lowering covers unpadded attention only (use 'function')")
    if is_hard(node):
        raise ExportError(f"node {node.name!r} is hard-masked (Mask2Former); the onnx-attention "
                          "lowering covers the soft mask only (use 'function')")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    heads = int(attrs["num_heads"])
    query, key, value, mask, alpha = node.input[:5]
    p = f"{node.name}/"
    mk = helper.make_node
    f32 = TensorProto.FLOAT
    bias = p + "bias_f"
    nodes = [
        mk("Cast", [mask], [p + "mask_f"], to=f32),
        mk("Cast", [alpha], [p + "alpha_f"], to=f32),
        mk("Constant", [], [p + "one"], value=helper.make_tensor(p + "one", f32, [], [1.0])),
        # M - 1 = -(1 - M): times alpha_h it is the op's mask term.
        mk("Sub", [p + "mask_f", p + "one"], [p + "mask_minus_one"]),
        mk("Constant", [], [p + "axis1"], value_ints=[1]),
        mk("Unsqueeze", [p + "mask_minus_one", p + "axis1"], [p + "mask_b1is"]),
        mk("Constant", [], [p + "alpha_shape"], value_ints=[1, -1, 1, 1]),
        mk("Reshape", [p + "alpha_f", p + "alpha_shape"], [p + "alpha_1h11"]),
        mk("Mul", [p + "alpha_1h11", p + "mask_b1is"], [bias]),
    ]
    extra = {}
    if query_type != f32:
        nodes.append(mk("Cast", [bias], [p + "bias"], to=query_type))
        bias = p + "bias"
        extra["softmax_precision"] = f32
    nodes.append(mk("Attention", [query, key, value, bias], [node.output[0]], name=node.name,
                    q_num_heads=heads, kv_num_heads=heads, **extra))
    return nodes


def _to_onnx_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert the standard ops to opset 23 first (semantics change between versions, e.g.
    GridSample's mode names at 20), then put Attention in place of each custom node."""
    types = _elem_types(model)
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    kept = [f for f in bare.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del bare.functions[:]
    bare.functions.extend(kept)
    register_schema()  # the converter checks every node against a schema
    try:
        lowered = onnx.version_converter.convert_version(bare, ATTENTION_OPSET)
    except Exception as error:  # the converter raises plain RuntimeErrors, among others
        raise ExportError(f"converting the graph to opset {ATTENTION_OPSET} for ONNX's "
                          f"Attention failed: {error}") from error
    nodes = []
    for node in lowered.graph.node:
        if node.op_type == OP_TYPE and node.domain == DOMAIN:
            nodes.extend(_attention_nodes(node, types.get(node.input[0], TensorProto.FLOAT)))
        else:
            nodes.append(node)
    del lowered.graph.node[:]
    lowered.graph.node.extend(nodes)
    return lowered
