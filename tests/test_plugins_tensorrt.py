"""The plugin inside a real TensorRT: registration, ONNX parsing into the plugin layer, engine run.

Marked ``tensorrt`` (and ``gpu`` where an engine is built): they skip with a reason where those are
absent, which includes CI. They need the plugin library built (see docs/deploy-tensorrt.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from onnx import TensorProto
from op_cases import as_float64, make_inputs

from softmask.ops import onnx_op
from softmask.ops.reference import soft_masked_attention
from softmask.plugins import PLUGIN_NAME, autoregister_library_path, load_into_tensorrt

pytestmark = pytest.mark.tensorrt


def test_load_into_tensorrt_registers_the_creator() -> None:
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    handle = load_into_tensorrt(registry)
    assert handle is not None
    assert registry.get_creator(PLUGIN_NAME, "1", "") is not None


def test_autoregister_library_registers_itself_when_dlopened() -> None:
    # A fresh interpreter: this process may already hold the other variant's creator.
    script = (
        "import ctypes, sys, tensorrt as trt\n"
        "registry = trt.get_plugin_registry()\n"
        f"ctypes.CDLL({str(autoregister_library_path())!r})\n"
        f"sys.exit(0 if registry.get_creator({PLUGIN_NAME!r}, '1', '') is not None else 3)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _build_engine(trt, model, shapes: dict[str, tuple[int, ...]]):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        pytest.fail(f"ONNX parser failed: {errors}")
    layer_types = [network.get_layer(i).type for i in range(network.num_layers)]
    assert trt.LayerType.PLUGIN_V3 in layer_types, f"no plugin layer in the network: {layer_types}"
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        if name == "alpha":
            continue  # static [H]
        # B, I and S range from 1 to the test's shape; E (last axis of query/key/value) is fixed.
        fixed_last = name in ("query", "key", "value")
        smallest = tuple(
            extent if fixed_last and axis == len(shape) - 1 else 1 for axis, extent in enumerate(shape)
        )
        profile.set_shape(name, smallest, shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None, "engine build failed (see TensorRT's log)"
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("padding", ["none", "some"])
def test_engine_runs_the_plugin_and_matches_the_reference(dtype: torch.dtype, padding: str) -> None:
    import tensorrt as trt

    load_into_tensorrt()
    inputs = make_inputs(2, 5, 37, 64, 2, dtype=dtype, padding=padding, seed=3)
    inputs["alpha"] = inputs["alpha"].float()
    with_padding = inputs["key_padding_mask"] is not None
    onnx_dtype = TensorProto.FLOAT16 if dtype == torch.float16 else TensorProto.FLOAT
    model = onnx_op.standalone_model(2, with_key_padding_mask=with_padding, dtype=onnx_dtype)
    onnx_op.strip_function_bodies(model)
    names = onnx_op.INPUT_NAMES if with_padding else onnx_op.INPUT_NAMES[:5]
    tensors = {n: inputs[n].cuda().contiguous() for n in names}
    engine = _build_engine(trt, model, {n: tuple(t.shape) for n, t in tensors.items()})

    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    assert PLUGIN_NAME in json.dumps(info), "the engine inspector shows no SoftMaskedAttention layer"

    context = engine.create_execution_context()
    for name, tensor in tensors.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    output = torch.empty_like(tensors["query"])
    context.set_tensor_address("output", output.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()

    expected = soft_masked_attention(**as_float64(inputs))
    tolerance = 2e-2 if dtype == torch.float16 else 1e-4
    torch.testing.assert_close(output.double().cpu(), expected, atol=tolerance, rtol=tolerance)
