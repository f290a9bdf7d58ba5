"""The TensorRT backend on CPU: fake TensorRT (tests/fake_tensorrt.py) running each engine with
ONNX Runtime on the export's own graph, on a fake CUDA driver (tests/fake_cuda.py) that keeps
device memory apart from the host and runs stream work in order.

Checked: the masks equal the ONNX Runtime backend's; buffers allocated and tensor addresses bound
once at load, one warm-up enqueue per context there (so TensorRT's onShapeChange never runs during
a frame); per frame only the frame/annotation go up and the labels (and ``active``) come down,
all on one stream in order; ``advance_empty`` is ``push_empty`` done on the device."""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

import fake_cuda
import fake_tensorrt
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from softmask.errors import BackendUnavailable
from softmask.export.frame_graphs import STATE_NAMES
from softmask.model.video import VideoState, push_empty
from softmask.ops.onnx_op import strip_function_bodies
from softmask.runtime import OnnxRuntimeBackend, VideoStream, tensorrt_backend
from softmask.runtime.tensorrt_backend import TensorRTBackend

H, W, N, WINDOW, T = 64, 96, 3, 3, 7
MIN_DIM = 48
LIBRARIES = {"plugin_library": "libsoftmask_trt_plugin.so", "plugin_sha256": "a" * 64,
             "kernels_sha256": "b" * 64}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export(shared_export):
    return shared_export(H, W, N, WINDOW, min_dim=MIN_DIM)


@pytest.fixture(scope="module")
def sessions(export):
    """ONNX Runtime sessions of the export's graphs, keyed by the sha256 of the stripped bytes
    TensorRT's parser gets (what the fake engine records)."""
    found = {}
    for path in export.graphs.values():
        model = onnx.load(str(path))
        strip_function_bodies(model)
        key = hashlib.sha256(model.SerializeToString()).hexdigest()
        found[key] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return found


@pytest.fixture
def fakes(monkeypatch, sessions):
    driver = fake_cuda.install(monkeypatch)

    def executor(engine, inputs):
        session = sessions[engine.onnx_sha256]
        names = [o.name for o in session.get_outputs()]
        feed = {i.name: inputs[i.name] for i in session.get_inputs()}
        return dict(zip(names, session.run(None, feed)))

    registry = fake_tensorrt.FakePluginRegistry()
    registry.register_creator(fake_tensorrt.FakeCreator("SoftMaskedAttention", "1"), "")
    trt = fake_tensorrt.make_module(registry, cuda=driver, executor=executor)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    # No plugin library is built here; the creator is registered in the fake registry.
    monkeypatch.setattr(tensorrt_backend, "library_digests", lambda: dict(LIBRARIES))
    return trt, driver


def _video():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 96, (T, H, W, 3), dtype=np.uint8)
    for t in range(T):
        frames[t, 8 + 3 * t: 36 + 3 * t, 20:52] = 230
    first = np.zeros((H, W), np.uint8)
    first[10:38, 20:52] = 1
    second = np.zeros((H, W), np.uint8)
    second[30:60, 60:90] = 2
    return frames, {1: first, 4: second}  # frame 0 comes before any object


def _run(backend, frames, annotations):
    stream = VideoStream(backend)
    return [stream.process(frame, annotations.get(t)) for t, frame in enumerate(frames)]


def _buffer_ranges(backend, names):
    return {backend._io[n].address for n in names if n in backend._io}


def test_masks_equal_the_onnxruntime_backend(fakes, export, tmp_path):
    frames, annotations = _video()
    reference = _run(OnnxRuntimeBackend(export, with_scores=True), frames, annotations)
    candidate = _run(TensorRTBackend(export, cache_dir=tmp_path, with_scores=True), frames,
                     annotations)
    assert any(out.labels.any() for out in reference[1:])  # the video tracks something
    for t, (want, got) in enumerate(zip(reference, candidate)):
        np.testing.assert_array_equal(got.labels, want.labels, err_msg=f"frame {t}")
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-6, err_msg=f"frame {t}")


def test_buffers_and_addresses_are_set_once_and_warmed_up_at_load(fakes, export, tmp_path):
    _, driver = fakes
    backend = TensorRTBackend(export, cache_dir=tmp_path)
    engines = backend._engines
    contexts = [c for e in engines.values() for c in e.contexts]
    assert len(contexts) == 2 * len(engines)  # one per graph and ping-pong parity
    bound = [c.address_calls for c in contexts]
    assert bound == [e.num_io_tensors for e in engines.values() for _ in range(2)]
    assert all(c.enqueues == 1 for c in contexts)  # the warm-up
    # Every context shares one activation memory, of the largest engine's size.
    assert len({c.device_memory for c in contexts}) == 1
    shape_changes = [c.shape_changes for c in contexts]
    allocations = dict(driver.memory)
    frames, annotations = _video()
    _run(backend, frames, annotations)
    assert [c.address_calls for c in contexts] == bound
    assert [c.shape_changes for c in contexts] == shape_changes  # onShapeChange: load time only
    assert driver.memory.keys() == allocations.keys() and not driver.freed
    # Frame 0 runs no graph; every other frame runs the frame encoder's engine, then its graph's.
    assert list(engines) == ["features", "init", "step", "annotate"]
    assert sum(c.enqueues for c in contexts) == len(contexts) + 2 * (T - 1)


def test_per_frame_copies_move_images_and_labels_never_the_state(fakes, export, tmp_path):
    _, driver = fakes
    backend = TensorRTBackend(export, cache_dir=tmp_path)
    frames, annotations = _video()
    stream = VideoStream(backend)
    state = {b.address for s in backend._states for b in s.values()}
    active = {s["active"].address for s in backend._states}
    streams = set()
    for t, frame in enumerate(frames):
        start = len(driver.log)
        stream.process(frame, annotations.get(t))
        ops = driver.log[start:]
        streams |= {op.stream for op in ops}
        if stream.last_graph == "none":
            assert {op.kind for op in ops} <= {"DtoD", "memset2D"}  # advance_empty on the device
            continue
        kinds = [op.kind for op in ops]
        uploads = ["HtoD"] * (1 if stream.last_graph == "step" else 2)
        downloads = ["DtoH"] * (1 if stream.last_graph == "step" else 2)
        # The frame encoder's engine, then the graph's: its maps stay in device buffers.
        assert kinds == [*uploads, "enqueue", "enqueue", *downloads], (t, kinds)
        assert {op.dst for op in ops if op.kind == "HtoD"} <= _buffer_ranges(
            backend, ("frame", "annotation"))
        assert not {op.dst for op in ops} & state
        read = {op.src for op in ops if op.kind == "DtoH"}
        assert read - active == {backend._io["labels"].address}
    assert streams == {backend._stream.handle}


def test_advance_empty_is_push_empty_on_the_device(fakes, export, tmp_path):
    _, driver = fakes
    backend = TensorRTBackend(export, cache_dir=tmp_path)
    rng = np.random.default_rng(3)
    before = {}
    for name, buffer in backend._state.items():
        values = rng.standard_normal(buffer.shape) if buffer.dtype != np.bool_ else (
            rng.random(buffer.shape) > 0.5)
        before[name] = values.astype(buffer.dtype)
    backend.write_state(before)
    start = len(driver.log)
    backend.advance_empty()
    assert {op.kind for op in driver.log[start:]} <= {"DtoD", "memset2D"}
    after = backend.read_state()
    want = push_empty(VideoState(*(torch.from_numpy(before[n]) for n in STATE_NAMES)))
    for name in STATE_NAMES:
        np.testing.assert_array_equal(after[name], getattr(want, name).numpy(), err_msg=name)


def test_without_cuda_bindings_or_a_gpu_the_backend_is_unavailable(fakes, export, monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", None)
    with pytest.raises(BackendUnavailable, match="cuda-bindings"):
        TensorRTBackend(export)
    fake_cuda.install(monkeypatch, fake_cuda.FakeDriver(devices=()))
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU: device 0 requested, the "
                                                 "driver sees 0"):
        TensorRTBackend(export)


def test_the_backend_and_its_cuda_layer_import_no_torch():
    # The whole import chain is torch-free once the package's own modules are (issue 18); the
    # backend's own code must not bring torch back.
    for path in ("softmask/runtime/tensorrt_backend.py", "softmask/runtime/cuda_driver.py"):
        tree = ast.parse((ROOT / path).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m == "torch" or m.startswith("torch.")}, path


def test_serve_repo_builds_tensorrt_plans(fakes, export, tmp_path):
    from softmask.serve.repository import write_repository

    trt, _ = fakes
    repo = write_repository(export.directory, tmp_path / "repo", graphs="tensorrt",
                            plugins=["/opt/softmask/libsoftmask_trt_plugin.so"])
    runtime = trt.Runtime(trt.Logger())
    for graph in ("init", "step", "annotate"):
        plan = runtime.deserialize_cuda_engine((repo / f"softmask_{graph}" / "1" / "model.plan")
                                               .read_bytes())
        assert plan.plugin_layers == export.manifest["graphs"][graph]["op_nodes"] > 0
    assert not (repo / "build_plans.sh").exists()
