"""softmask.export.streaming: the per-frame graphs, their manifest, fp16, and reading them back."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest

from softmask.errors import InputError
from softmask.export.streaming import MANIFEST_NAME, export_streaming, load_streaming_export
from softmask.ops.onnx_op import DOMAIN, OP_TYPE
from softmask.runtime import OnnxRuntimeBackend, TorchBackend, VideoStream

# The sizes of test_cli's exports: the session's shared exports serve both.
H, W, N, WINDOW = 64, 96, 2, 3
C, QB = 64, 9  # tiny config: width and background descriptors


@pytest.fixture(scope="module")
def export(shared_export):
    return shared_export(H, W, N, WINDOW)


def _plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == OP_TYPE and n.domain == DOMAIN]


def test_graphs_pass_the_checker_and_hold_one_plugin_node_per_encoder_layer_call(export):
    # The encoder's layers are the only soft-masked attention calls (2 in tiny). init encodes the
    # annotation, step encodes its prediction, annotate does both; the frame encoder (features)
    # has none.
    encodes = {"features": 0, "init": 1, "step": 1, "annotate": 2}
    assert set(export.graphs) == set(encodes)
    for name, path in export.graphs.items():
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph, full_check=True)
        nodes = _plugin_nodes(graph)
        assert len(nodes) == 2 * encodes[name], name
        # TensorRT names each layer after its node: the plugin layers must say what they are.
        assert [n.name for n in nodes] == [f"{OP_TYPE}_{i}" for i in range(len(nodes))]
        assert export.manifest["graphs"][name]["op_nodes"] == len(nodes)
        if nodes:  # the function bodies that let plain ONNX Runtime run the node are attached
            assert any(f.name == OP_TYPE and f.domain == DOMAIN for f in graph.functions)
        props = {p.key: p.value for p in graph.metadata_props}
        assert props["softmask.graph"] == name
        assert json.loads(props["softmask.stream_spec"])["num_objects"] == N


def test_graph_inputs_and_outputs_are_uint8_images_the_frame_encoders_maps_and_the_state(export):
    state = [
        {"name": "fg", "dtype": "float32", "shape": [1, N, WINDOW, C]},
        {"name": "fg_valid", "dtype": "bool", "shape": [1, N, WINDOW]},
        {"name": "bg", "dtype": "float32", "shape": [1, QB, WINDOW, C]},
        {"name": "bg_valid", "dtype": "bool", "shape": [1, QB, WINDOW]},
        {"name": "active", "dtype": "bool", "shape": [1, N]},
    ]
    frame = {"name": "frame", "dtype": "uint8", "shape": [H, W, 3]}
    annotation = {"name": "annotation", "dtype": "uint8", "shape": [H, W]}
    f4 = {"name": "f4", "dtype": "float32", "shape": [1, C, H // 4, W // 4]}
    f8 = {"name": "f8", "dtype": "float32", "shape": [1, C, H // 8, W // 8]}
    outputs = [
        {"name": "labels", "dtype": "uint8", "shape": [H, W]},
        {"name": "scores", "dtype": "float32", "shape": [N, H, W]},
        *({**s, "name": s["name"] + "_next"} for s in state),
    ]
    assert export.io("features", "inputs") == [frame]
    assert export.io("features", "outputs") == [f4, f8]
    assert export.io("init", "inputs") == [f8, annotation, *state]
    assert export.io("step", "inputs") == [f4, f8, *state]
    assert export.io("annotate", "inputs") == [f4, f8, annotation, *state]
    for name in ("init", "step", "annotate"):
        assert export.io(name, "outputs") == outputs
        assert export.chain(name) == ("features", name)
    assert export.manifest["format_version"] == 2


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """ONNX element type of every named value of the main graph (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def test_uint8_casts_convert_only_from_or_to_float_and_labels_end_with_float_to_uint8(export):
    # TensorRT converts kUINT8 only from/to kFLOAT and kHALF (NvInferRuntimeBase.h); an int64 ->
    # uint8 cast may not build (TensorRT 10.3 on JetPack 6 in particular).
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    for name, path in export.graphs.items():
        graph = onnx.load(str(path))
        types = _elem_types(graph)
        casts = [n for n in graph.graph.node if n.op_type == "Cast"]
        for cast in casts:
            target = onnx.helper.get_attribute_value(cast.attribute[0])
            source = types[cast.input[0]]
            if onnx.TensorProto.UINT8 in (source, target):
                assert {source, target} - {onnx.TensorProto.UINT8} <= floats, (name, cast.name, source, target)
        if name == "features":
            continue
        last = next(n for n in graph.graph.node if "labels" in n.output)
        assert last.op_type == "Cast", (name, last.op_type)
        assert onnx.helper.get_attribute_value(last.attribute[0]) == onnx.TensorProto.UINT8
        assert types[last.input[0]] == onnx.TensorProto.FLOAT, name


def test_labels_stay_exact_up_to_255_objects_in_torch_and_onnxruntime(tmp_path):
    import onnxruntime as ort
    import torch

    from softmask.export import export_onnx
    from softmask.model.video import FrameGeometry, finalize

    geometry = FrameGeometry(original=(16, 16), resized=(16, 16), padded=(16, 16))

    class Finalize(torch.nn.Module):
        def forward(self, scores):
            return finalize(scores, 1, geometry)[0]

    # 1 background + 255 object channels; pixel p's winner is channel p.
    scores = torch.eye(256).reshape(256, 16, 16)
    expected = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(Finalize()(scores).numpy(), expected)
    path = export_onnx(Finalize(), (scores,), tmp_path / "finalize.onnx", output_names=["labels"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (labels,) = session.run(None, {session.get_inputs()[0].name: scores.numpy()})
    assert labels.dtype == np.uint8
    assert np.array_equal(labels, expected)


def test_manifest_records_config_sizes_precision_and_hashes(export, model):
    manifest = json.loads((export.directory / MANIFEST_NAME).read_text())
    assert manifest["model_config"] == model.config.to_dict()
    assert manifest["spec"] == {
        "height": H,
        "width": W,
        "num_objects": N,
        "temporal_window": WINDOW,
        "min_dim": None,
        "max_dim": None,
    }
    assert manifest["geometry"]["padded"] == [64, 96]
    assert manifest["precision"] == "fp32"
    for name, path in export.graphs.items():
        assert manifest["graphs"][name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_streaming_export(export.directory)
    assert loaded.spec == export.spec and loaded.graphs == export.graphs


def test_loading_a_modified_or_incomplete_export_names_the_file(export, tmp_path):
    for path in export.graphs.values():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / MANIFEST_NAME).write_text((export.directory / MANIFEST_NAME).read_text())
    with (tmp_path / "step.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputError, match="step.onnx: sha256 differs"):
        load_streaming_export(tmp_path)
    (tmp_path / "init.onnx").unlink()
    with pytest.raises(InputError, match="init.onnx: graph file .* is missing"):
        load_streaming_export(tmp_path)
    with pytest.raises(InputError, match="no streaming manifest"):
        load_streaming_export(tmp_path / "elsewhere")


def test_bad_sizes_are_input_errors(model, tmp_path):
    with pytest.raises(InputError, match="num_objects must be a positive integer"):
        export_streaming(model, tmp_path, H, W, 0)


def test_fp16_export_runs_in_onnxruntime_close_to_the_fp32_model(model, shared_export):
    export = shared_export(H, W, N, WINDOW, fp16=True)
    assert export.precision == "fp16"
    dtypes = {i["name"]: i["dtype"] for i in export.io("step", "inputs")}
    assert dtypes == {
        "f4": "float16",
        "f8": "float16",
        "fg": "float16",
        "fg_valid": "bool",
        "bg": "float16",
        "bg_valid": "bool",
        "active": "bool",
    }
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    annotation = np.zeros((H, W), np.uint8)
    annotation[8:40, 16:56] = 1
    reference = VideoStream(TorchBackend(model, export.spec, with_scores=True))
    half = VideoStream(OnnxRuntimeBackend(export, with_scores=True))
    for t, frame in enumerate(frames):
        ann = annotation if t == 0 else None
        ref, out = reference.process(frame, ann), half.process(frame, ann)
        # fp16 weights and descriptors: about 3 decimal digits.
        np.testing.assert_allclose(out.scores, ref.scores, atol=1e-2)
        assert (out.labels == ref.labels).mean() > 0.99


def test_an_export_folder_has_the_usual_permissions(export):
    # Staged in mkdtemp's owner-only folder, renamed into place readable as mkdir() would make it.
    from softmask.files import DIR_MODE

    assert export.directory.stat().st_mode & 0o777 == DIR_MODE
