"""The plugin inside a real TensorRT: registration, ONNX parsing into the plugin layer, engine run.

Marked ``tensorrt`` (and ``gpu`` where an engine is built): they skip with a reason where those are
absent, which includes CI, and where the plugin libraries have not been built (the skip message
says how to build them). Engines are built with softmask's own build path
(``softmask.runtime.tensorrt_build``: detailed profiling verbosity, plugin layer count checked).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from onnx import TensorProto
from op_cases import as_float64, make_inputs
from test_kernel_gpu import GPU_TOLERANCE

from softmask.errors import BackendUnavailable
from softmask.ops import onnx_op
from softmask.ops.reference import soft_masked_attention
from softmask.plugins import (
    PLUGIN_NAME,
    autoregister_library_path,
    find_creator,
    library_path,
    load_into_tensorrt,
)
from softmask.runtime.tensorrt_build import build_serialized_engine, engine_layer_names

pytestmark = pytest.mark.tensorrt


def _built(find) -> str:
    try:
        return str(find())
    except BackendUnavailable as error:
        pytest.skip(f"the plugin library is not built: {error}")


@pytest.fixture(scope="module")
def trt():
    """TensorRT with the plugin registered (once per process: load_into_tensorrt is idempotent)."""
    import tensorrt

    _built(library_path)
    load_into_tensorrt()
    return tensorrt


def test_loading_again_is_a_no_op_returning_the_same_handle(trt) -> None:
    registry = trt.get_plugin_registry()
    first = load_into_tensorrt(registry)
    assert load_into_tensorrt(registry) is first
    assert find_creator(registry) is not None
    assert registry.get_creator(PLUGIN_NAME, "1", "") is not None


def test_autoregister_library_registers_itself_when_dlopened() -> None:
    # A fresh interpreter: this process holds the other variant's creator already.
    library = _built(autoregister_library_path)
    script = (
        "import ctypes, sys, tensorrt as trt\n"
        "registry = trt.get_plugin_registry()\n"
        f"ctypes.CDLL({library!r})\n"
        f"sys.exit(0 if registry.get_creator({PLUGIN_NAME!r}, '1', '') is not None else 3)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _profile(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """B, I and S from 1 to the test's sizes; E (last axis of query/key/value) fixed."""
    shapes = {}
    for name, tensor in tensors.items():
        if name == "alpha":
            continue  # static [H]
        shape = tuple(tensor.shape)
        fixed_last = name in ("query", "key", "value")
        smallest = tuple(e if fixed_last and a == len(shape) - 1 else 1 for a, e in enumerate(shape))
        shapes[name] = (smallest, shape, shape)
    return shapes


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("padding", ["none", "some"])
def test_engine_runs_the_plugin_and_matches_the_reference(trt, dtype: torch.dtype, padding: str) -> None:
    inputs = make_inputs(2, 5, 37, 64, 2, dtype=dtype, padding=padding, seed=3)
    inputs["alpha"] = inputs["alpha"].float()
    with_padding = inputs["key_padding_mask"] is not None
    onnx_dtype = TensorProto.FLOAT16 if dtype == torch.float16 else TensorProto.FLOAT
    model = onnx_op.standalone_model(2, with_key_padding_mask=with_padding, dtype=onnx_dtype)
    onnx_op.strip_function_bodies(model)
    names = onnx_op.INPUT_NAMES if with_padding else onnx_op.INPUT_NAMES[:5]
    tensors = {n: inputs[n].cuda().contiguous() for n in names}

    logger = trt.Logger(trt.Logger.WARNING)
    serialized = build_serialized_engine(
        trt, logger, model.SerializeToString(), "standalone.onnx", 1,
        "fp16" if dtype == torch.float16 else "fp32", 1 << 30, shapes=_profile(tensors),
    )
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    assert f"{PLUGIN_NAME}_0" in engine_layer_names(trt, engine)

    context = engine.create_execution_context()
    for name, tensor in tensors.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    output = torch.empty_like(tensors["query"])
    context.set_tensor_address("output", output.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()

    # The kernels' own GPU check (tests/test_kernel_gpu.py): max error relative to the largest output.
    expected = soft_masked_attention(**as_float64(inputs))
    error = (output.double().cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-6)
    assert error.item() <= GPU_TOLERANCE[str(dtype)], error.item()
