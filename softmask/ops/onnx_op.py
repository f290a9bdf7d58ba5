"""The op in ONNX: node schema, torch->ONNX translation, and the standard-op function body.

Node (TensorRT plugin conventions, see docs/ops.md):
    SoftMaskedAttention, domain "trt.plugins", opset 1
    inputs  query [B,I,E] T, key [B,S,E] T, value [B,S,E] T, mask [B,I,S] M, alpha [H] A,
            optional key_padding_mask [B,S] bool
    output  [B,I,E] T
    attributes num_heads (int), num_splits (int, 0 = the plugin picks the key split count for
            the GPU), plugin_version (string, "1"), plugin_namespace (string, "");
            optional hard_mask (int, default 0): 1 = Mask2Former's masked attention, mask bool
            (True = attend), alpha unused, a row with every key blocked attends to all keys

Model-local functions of the same name and domain (four overloads: soft or hard, with and
without key_padding_mask) compute the op with standard ONNX ops (opset 18), in float32 whatever
T is (as the fused kernel accumulates), so any ONNX runtime runs it without the plugin. Math:
``softmask/ops/reference.py``.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from softmask.errors import ExportError

DOMAIN = "trt.plugins"
OP_TYPE = "SoftMaskedAttention"
OP_VERSION = 1
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
BODY_OPSET = 18
PADDED_OVERLOAD = "key_padding_mask"
HARD_ATTRIBUTE = "hard_mask"

INPUT_NAMES = ("query", "key", "value", "mask", "alpha", "key_padding_mask")
ATTRIBUTE_NAMES = ("num_heads", "num_splits", "plugin_version", "plugin_namespace")
# Every field the plugin creator lists (getFieldNames) is written: TensorRT's ONNX parser warns
# once per node for a listed field the node lacks.
AUTO_SPLITS = 0
_FLOAT_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]


def _schema() -> onnx.defs.OpSchema:
    param = onnx.defs.OpSchema.FormalParameter
    optional = onnx.defs.OpSchema.FormalParameterOption.Optional
    attr = onnx.defs.OpSchema.Attribute
    kinds = onnx.defs.OpSchema.AttrType
    return onnx.defs.OpSchema(
        OP_TYPE,
        DOMAIN,
        OP_VERSION,
        doc="Soft-masked attention (Athar et al. 2022); see softmask docs/ops.md.",
        inputs=[
            param("query", "T", "[B, I, E] queries"),
            param("key", "T", "[B, S, E] keys"),
            param("value", "T", "[B, S, E] values"),
            param("mask", "M", "[B, I, S] soft mask in [0, 1] (bool with hard_mask=1), "
                  "shared by all heads"),
            param("alpha", "A", "[H] per-head mask scale"),
            param("key_padding_mask", "P", "[B, S] True = padded key", param_option=optional),
        ],
        outputs=[param("output", "T", "[B, I, E]")],
        type_constraints=[
            ("T", _FLOAT_TYPES, "query, key, value and output"),
            ("M", [*_FLOAT_TYPES, "tensor(bool)"], "mask"),
            ("A", _FLOAT_TYPES, "alpha"),
            ("P", ["tensor(bool)"], "key padding mask"),
        ],
        attributes=[
            attr("num_heads", kinds.INT, "number of heads H; E = H * D"),
            attr("num_splits", kinds.INT, "key splits of the fused kernel; 0 = chosen per GPU"),
            attr("plugin_version", kinds.STRING, "TensorRT plugin version"),
            attr("plugin_namespace", kinds.STRING, "TensorRT plugin namespace"),
            attr(HARD_ATTRIBUTE, helper.make_attribute(HARD_ATTRIBUTE, 0),
                 "1: hard (Mask2Former) masked attention, bool mask"),
        ],
    )


def register_schema() -> None:
    """Register the node's OpSchema with onnx (idempotent).

    onnxscript only lets a translation emit a node of a custom domain once its schema is known.
    """
    if not onnx.defs.has(OP_TYPE, DOMAIN):
        onnx.defs.register_schema(_schema())


def translate(query, key, value, mask, alpha, num_heads: int, key_padding_mask=None,
              hard: bool = False):
    """torch.onnx (dynamo) translation of ``softmask::soft_masked_attention``: one custom node
    (``hard_mask=1`` only in hard mode, so soft-mode nodes stay as they were)."""
    import onnxscript

    plugins = onnxscript.values.Opset(DOMAIN, OP_VERSION)
    attrs = {
        "num_heads": num_heads,
        "num_splits": AUTO_SPLITS,
        "plugin_version": PLUGIN_VERSION,
        "plugin_namespace": PLUGIN_NAMESPACE,
    }
    if hard:
        attrs[HARD_ATTRIBUTE] = 1
    if key_padding_mask is None:
        return plugins.SoftMaskedAttention(query, key, value, mask, alpha, **attrs)
    return plugins.SoftMaskedAttention(query, key, value, mask, alpha, key_padding_mask, **attrs)


def _const_ints(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value_ints=values)


def _const_float(name: str, value: float, dims: tuple[int, ...] = ()) -> onnx.NodeProto:
    count = 1
    for d in dims:
        count *= d
    tensor = helper.make_tensor(name, TensorProto.FLOAT, list(dims), [value] * count)
    return helper.make_node("Constant", [], [name], value=tensor)


def _padding_nodes() -> list[onnx.NodeProto]:
    """Key padding: bias [B,1,1,S] (-inf on padded keys) and keep [B,1,1,1] (0 or 1).

    A batch element whose keys are all padded gets a zero bias (a finite softmax) and keep = 0,
    so its output rows become zeros, as the contract says.
    """
    mk = helper.make_node
    return [
        mk("Cast", ["key_padding_mask"], ["padded_f"], to=TensorProto.FLOAT),
        _const_ints("key_axis", [1]),
        mk("ReduceMin", ["padded_f", "key_axis"], ["all_padded"], keepdims=1),
        mk("Sub", ["one", "all_padded"], ["keep_b1"]),
        mk("Mul", ["padded_f", "keep_b1"], ["masked_f"]),
        mk("Cast", ["masked_f"], ["masked"], to=TensorProto.BOOL),
        _const_float("neg_inf", float("-inf")),
        _const_float("zero", 0.0),
        mk("Where", ["masked", "neg_inf", "zero"], ["bias_bs"]),
        _const_ints("axes12", [1, 2]),
        mk("Unsqueeze", ["bias_bs", "axes12"], ["pad_bias"]),
        _const_ints("axes23", [2, 3]),
        mk("Unsqueeze", ["keep_b1", "axes23"], ["pad_keep"]),
    ]


def overload_name(with_key_padding_mask: bool, hard: bool) -> str:
    """The function overload a node with these inputs and mode runs ("" for soft, unpadded)."""
    parts = (["hard"] if hard else []) + ([PADDED_OVERLOAD] if with_key_padding_mask else [])
    return "_".join(parts)


def _soft_mask_nodes() -> list[onnx.NodeProto]:
    """Soft mode: logits = qk_scaled - alpha[h] * (1 - mask)."""
    mk = helper.make_node
    return [
        mk("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        mk("Sub", ["one", "mask_f"], ["mask_off"]),
        _const_ints("axis1", [1]),
        mk("Unsqueeze", ["mask_off", "axis1"], ["mask_off_b1is"]),
        _const_ints("alpha_shape", [1, -1, 1, 1]),
        mk("Reshape", ["alpha_f", "alpha_shape"], ["alpha_1h11"]),
        mk("Mul", ["alpha_1h11", "mask_off_b1is"], ["mask_penalty"]),
        mk("Sub", ["qk_scaled", "mask_penalty"], ["logits"]),
    ]


def _hard_mask_nodes(with_key_padding_mask: bool) -> list[onnx.NodeProto]:
    """Hard mode: -inf where the bool mask blocks a key, except in rows with no unpadded
    allowed key, which attend to every key (``softmask.ops.reference.allowed_keys``)."""
    mk = helper.make_node
    valid = "mask"
    padding = []
    if with_key_padding_mask:
        padding = [
            mk("Not", ["key_padding_mask"], ["unpadded_bs"]),
            _const_ints("axis1_pad", [1]),
            mk("Unsqueeze", ["unpadded_bs", "axis1_pad"], ["unpadded_b1s"]),
            mk("And", ["mask", "unpadded_b1s"], ["mask_unpadded"]),
        ]
        valid = "mask_unpadded"
    return [
        *padding,
        mk("Cast", [valid], ["valid_f"], to=TensorProto.FLOAT),
        _const_ints("last_axis", [-1]),
        mk("ReduceMax", ["valid_f", "last_axis"], ["any_valid"], keepdims=1),
        _const_float("zero_f", 0.0),
        mk("Equal", ["any_valid", "zero_f"], ["empty_row"]),
        mk("Or", ["mask", "empty_row"], ["allowed"]),
        _const_float("blocked_f", float("-inf")),
        mk("Where", ["allowed", "zero_f", "blocked_f"], ["mask_bias"]),
        _const_ints("axis1", [1]),
        mk("Unsqueeze", ["mask_bias", "axis1"], ["mask_bias_b1is"]),
        mk("Add", ["qk_scaled", "mask_bias_b1is"], ["logits"]),
    ]


def function_body(with_key_padding_mask: bool, hard: bool = False) -> onnx.FunctionProto:
    """The op as a model-local ONNX function of standard opset-18 ops.

    ONNX functions cannot branch on an absent input or an attribute's value, so there are four
    overloads of the same name and domain (``overload_name``): soft or hard mode, 5 inputs or 6
    (with key_padding_mask); each node names its own in its ``overload`` field.

    Shapes: H comes from alpha's shape, D = E / H; all arithmetic in float32, output cast to T.
    """
    mk = helper.make_node
    f32 = TensorProto.FLOAT
    logits, ctx = "logits", "ctx_bhid"
    padding = []
    if with_key_padding_mask:
        padding = [
            *_padding_nodes(),
            mk("Add", ["logits", "pad_bias"], ["logits_padded"]),
        ]
        logits = "logits_padded"
    nodes = [
        *(mk("Cast", [n], [f"{n}_f"], to=f32) for n in ("query", "key", "value", "alpha")),
        mk("Shape", ["alpha"], ["heads"]),
        mk("Shape", ["query"], ["embed"], start=2),
        mk("Div", ["embed", "heads"], ["head_dim"]),
        _const_ints("zeros2", [0, 0]),
        _const_ints("minus1", [-1]),
        mk("Concat", ["zeros2", "heads", "minus1"], ["split_shape"], axis=0),
        mk("Reshape", ["query_f", "split_shape"], ["q_bihd"]),
        mk("Transpose", ["q_bihd"], ["q"], perm=[0, 2, 1, 3]),
        mk("Reshape", ["key_f", "split_shape"], ["k_bshd"]),
        mk("Transpose", ["k_bshd"], ["k_t"], perm=[0, 2, 3, 1]),
        mk("Reshape", ["value_f", "split_shape"], ["v_bshd"]),
        mk("Transpose", ["v_bshd"], ["v"], perm=[0, 2, 1, 3]),
        mk("MatMul", ["q", "k_t"], ["qk"]),
        mk("Cast", ["head_dim"], ["head_dim_f"], to=f32),
        mk("Sqrt", ["head_dim_f"], ["sqrt_d"]),
        mk("Div", ["qk", "sqrt_d"], ["qk_scaled"]),
        _const_float("one", 1.0),
        *(_hard_mask_nodes(with_key_padding_mask) if hard else _soft_mask_nodes()),
        *padding,
        mk("Softmax", [logits], ["probs"], axis=-1),
        mk("MatMul", ["probs", "v"], ["ctx_bhid"]),
    ]
    if with_key_padding_mask:
        nodes.append(mk("Mul", ["ctx_bhid", "pad_keep"], ["ctx_kept"]))
        ctx = "ctx_kept"
    nodes += [
        mk("Transpose", [ctx], ["ctx_bihd"], perm=[0, 2, 1, 3]),
        _const_ints("merge_shape", [0, 0, -1]),
        mk("Reshape", ["ctx_bihd", "merge_shape"], ["out_f"]),
        mk("CastLike", ["out_f", "query"], ["output"]),
    ]
    inputs = list(INPUT_NAMES if with_key_padding_mask else INPUT_NAMES[:5])
    function = helper.make_function(
        DOMAIN,
        OP_TYPE,
        inputs,
        ["output"],
        nodes,
        [helper.make_opsetid("", BODY_OPSET)],
        attributes=list(ATTRIBUTE_NAMES) + ([HARD_ATTRIBUTE] if hard else []),
        doc_string=f"{'Hard' if hard else 'Soft'}-masked attention with standard ONNX ops "
                   "(float32 compute).",
    )
    function.overload = overload_name(with_key_padding_mask, hard)
    return function


def is_hard(node: onnx.NodeProto) -> bool:
    """Whether a SoftMaskedAttention node runs in hard mode (``hard_mask`` = 1)."""
    return any(a.name == HARD_ATTRIBUTE and a.i == 1 for a in node.attribute)


def attach_function_bodies(model: onnx.ModelProto) -> int:
    """Add the op's function overloads to ``model``, point padded nodes at theirs and name the
    nodes ``SoftMaskedAttention_<i>`` (graph order).

    TensorRT's parser names each layer after its node (an unnamed node after its first output),
    so the name is what makes the plugin layers recognisable in engine inspectors, trtexec's
    layer info and profiles. Returns the number of SoftMaskedAttention nodes found (in the main
    graph). Raises ExportError when a node does not carry the attributes the plugin needs.
    """
    nodes = [n for n in model.graph.node if n.op_type == OP_TYPE and n.domain == DOMAIN]
    for index, node in enumerate(nodes):
        names = {a.name for a in node.attribute}
        missing = [a for a in ATTRIBUTE_NAMES if a not in names]
        if missing:
            raise ExportError(f"node {node.name!r} ({OP_TYPE}) lacks attribute(s) {missing}")
        # The exporter writes the schema's default hard_mask=0 on soft nodes: dropped, so soft
        # nodes carry exactly the plugin fields they always did.
        soft_defaults = [a for a in node.attribute if a.name == HARD_ATTRIBUTE and a.i == 0]
        for attribute in soft_defaults:
            node.attribute.remove(attribute)
        node.name = f"{OP_TYPE}_{index}"
        node.overload = overload_name(len(node.input) == 6 and bool(node.input[5]), is_hard(node))
    kept = [f for f in model.functions if not (f.name == OP_TYPE and f.domain == DOMAIN)]
    del model.functions[:]
    modes = (False, True) if any(is_hard(n) for n in nodes) else (False,)
    bodies = [function_body(padded, hard) for hard in modes for padded in (False, True)]
    model.functions.extend([*kept, *bodies])
    # Function overloads need IR version 10 (ONNX 1.16).
    model.ir_version = max(model.ir_version, 10)
    return len(nodes)


def strip_function_bodies(model: onnx.ModelProto) -> int:
    """Remove the op's function bodies (in place) so TensorRT's parser takes the plugin.

    Parsers >= 10.15 prefer a model-local function over a plugin unless told otherwise; without
    the body every version uses the registered plugin. Returns the number of functions removed.
    """
    kept = [f for f in model.functions if not (f.name == OP_TYPE and f.domain == DOMAIN)]
    removed = len(model.functions) - len(kept)
    del model.functions[:]
    model.functions.extend(kept)
    for node in model.graph.node:
        if node.op_type == OP_TYPE and node.domain == DOMAIN:
            node.overload = ""
    return removed


def standalone_model(
    num_heads: int,
    with_key_padding_mask: bool = False,
    dtype: int = TensorProto.FLOAT,
    mask_dtype: int | None = None,
    hard: bool = False,
) -> onnx.ModelProto:
    """A model holding one SoftMaskedAttention node and its function bodies; B, I, S, E dynamic.

    Graph inputs are named as the node's (query, key, value, mask, alpha[, key_padding_mask]);
    alpha is an input here (an initializer in exported models); ``hard`` makes a hard-mode node
    (bool mask). For benchmarks and tests of the function body without going through
    torch.export.
    """
    register_schema()
    mask_dtype = TensorProto.BOOL if hard else dtype if mask_dtype is None else mask_dtype
    names = INPUT_NAMES if with_key_padding_mask else INPUT_NAMES[:5]
    shapes = {
        "query": (dtype, ["B", "I", "E"]),
        "key": (dtype, ["B", "S", "E"]),
        "value": (dtype, ["B", "S", "E"]),
        "mask": (mask_dtype, ["B", "I", "S"]),
        "alpha": (TensorProto.FLOAT, [num_heads]),
        "key_padding_mask": (TensorProto.BOOL, ["B", "S"]),
    }
    inputs = [helper.make_tensor_value_info(n, *shapes[n]) for n in names]
    node = helper.make_node(
        OP_TYPE,
        list(names),
        ["output"],
        domain=DOMAIN,
        num_heads=num_heads,
        num_splits=AUTO_SPLITS,
        plugin_version=PLUGIN_VERSION,
        plugin_namespace=PLUGIN_NAMESPACE,
        **({HARD_ATTRIBUTE: 1} if hard else {}),
    )
    graph = helper.make_graph(
        [node], "soft_masked_attention", inputs,
        [helper.make_tensor_value_info("output", dtype, ["B", "I", "E"])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", BODY_OPSET), helper.make_opsetid(DOMAIN, OP_VERSION)],
    )
    attach_function_bodies(model)
    return model
