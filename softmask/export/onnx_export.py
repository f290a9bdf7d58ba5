"""torch -> ONNX: the one export entry point.

Every call of ``softmask::soft_masked_attention`` becomes one ``trt.plugins::SoftMaskedAttention``
node (TensorRT plugin conventions), and the model carries the op's standard-op function bodies so
plain ONNX Runtime runs it. See docs/ops.md.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch

from softmask import __version__
from softmask.errors import ExportError

# custom_op registers softmask::soft_masked_attention, the op translated below.
from softmask.ops import custom_op, onnx_op  # noqa: F401

logger = logging.getLogger(__name__)

OPSET = 18


def _to_half(value: Any) -> Any:
    """Cast floating tensors (also inside tuples/lists/dicts) to float16; leave the rest."""
    if isinstance(value, torch.Tensor):
        return value.half() if value.dtype.is_floating_point else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_half(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _to_half(v) for k, v in value.items()}
    return value


def _run_exporter(
    module: torch.nn.Module,
    args: tuple[Any, ...],
    dynamic_shapes: Any,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
) -> onnx.ModelProto:
    table = {torch.ops.softmask.soft_masked_attention.default: onnx_op.translate}
    chatter = io.StringIO()
    try:
        # The exporter prints progress to stdout and warns about axis naming; library code logs.
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                opset_version=OPSET,
                custom_translation_table=table,
                dynamic_shapes=dynamic_shapes,
                input_names=list(input_names) if input_names else None,
                output_names=list(output_names) if output_names else None,
                verbose=False,
                report=False,
            )
    except Exception as exc:
        logger.debug("exporter output:\n%s", chatter.getvalue())
        raise ExportError(
            f"torch.onnx.export failed for {type(module).__name__}: {type(exc).__name__}: {exc}"
        ) from exc
    logger.debug("exporter output:\n%s", chatter.getvalue())
    for warning in caught:
        logger.debug("exporter warning: %s", warning.message)
    return program.model_proto


def export_onnx(
    module: torch.nn.Module,
    example_inputs: Sequence[Any],
    path: str | Path,
    dynamic_shapes: Any = None,
    fp16: bool = False,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``module`` to an ONNX file at ``path`` (opset 18) and check it.

    Args:
        module: any nn.Module; each soft-masked attention call becomes one custom node.
        example_inputs: positional inputs of ``module.forward``.
        path: output .onnx file (parent folders are created).
        dynamic_shapes: as for ``torch.export`` (e.g. ``{0: Dim("batch"), 1: Dim("queries")}``
            per input) to keep B, I and S dynamic; None exports static shapes.
        fp16: export a float16 model (parameters and floating inputs cast to float16; the op's
            function body still computes in float32).
        input_names, output_names: graph input/output names (defaults: the forward's names).
        metadata: extra key/value pairs for the model's metadata_props.

    Returns:
        The path written.

    Raises:
        ExportError: the exporter failed or the result does not pass ``onnx.checker`` (full).
    """
    onnx_op.register_schema()
    if module.training:
        logger.warning("exporting %s in training mode (dropout is exported); call .eval() first",
                       type(module).__name__)
    args = tuple(example_inputs)
    if fp16:
        module = copy.deepcopy(module).half()
        args = _to_half(args)
    model = _run_exporter(module, args, dynamic_shapes, input_names, output_names)
    nodes = onnx_op.attach_function_bodies(model)
    logger.info("exported %s: %d SoftMaskedAttention node(s)", type(module).__name__, nodes)
    props = {"producer": f"softmask {__version__}", "softmask.op_nodes": str(nodes),
             "softmask.precision": "fp16" if fp16 else "fp32", **(metadata or {})}
    onnx.helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported model fails onnx.checker: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
