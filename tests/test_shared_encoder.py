"""The shared-encoder export (format version 2: the frame encoder is a graph of its own that init,
step and annotate consume) against the self-contained graphs of format version 1, both exported
from the same model: identical masks in ONNX Runtime on the tiny model and on full
HODOR (random weights, 64x96), the backbone's weights stored once, and the torch backend (which
runs the split modules) equal to the unsplit modules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from softmask.export.frame_graphs import GRAPH_MODULES, empty_state
from softmask.export.manifest import StreamingExport, load_streaming_export
from softmask.export.spec import StreamSpec
from softmask.export.streaming import export_streaming
from softmask.model import build_model
from softmask.runtime import OnnxRuntimeBackend, TorchBackend, VideoStream
from softmask.runtime.backend import FrameOutput
from tests.videos import first_annotation, moving_objects

H, W, OBJECTS, WINDOW, FRAMES = 64, 96, 2, 3, 5
GRAPHS = ["init", "step", "annotate", "step", "step"]


def _video() -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Frames and annotations that run init, step, annotate (object 2 appears at frame 2)."""
    labels = first_annotation(H, W)
    annotations = {0: labels * (labels == 1), 2: (labels == 2).astype(np.uint8) * 2}
    return list(moving_objects(FRAMES, H, W)), annotations


def _run(backend, frames, annotations) -> list[tuple[str, FrameOutput]]:
    """(graph run, output) per frame."""
    stream = VideoStream(backend)
    outputs = []
    for t, frame in enumerate(frames):
        out = stream.process(frame, annotations.get(t))
        outputs.append((stream.last_graph, out))
    return outputs


def _large_initializers(path: Path) -> set[str]:
    """sha256 of every initializer of at least 1024 values (weights, not small constants)."""
    model = onnx.load(str(path))
    digests = set()
    for tensor in model.graph.initializer:
        array = onnx.numpy_helper.to_array(tensor)
        if array.size >= 1024:
            digests.add(hashlib.sha256(array.tobytes()).hexdigest())
    return digests


def _check_same_masks(separate: StreamingExport, shared: StreamingExport) -> None:
    """``separate`` (format version 1) and ``shared`` (version 2), exports of one model."""
    frames, annotations = _video()
    assert separate.manifest["format_version"] == 1 and set(separate.graphs) == set(GRAPH_MODULES)
    assert shared.manifest["format_version"] == 2
    assert set(shared.graphs) == {"features", *GRAPH_MODULES}
    cpu = ["CPUExecutionProvider"]
    before = _run(OnnxRuntimeBackend(separate, providers=cpu, with_scores=True), frames, annotations)
    after = _run(OnnxRuntimeBackend(shared, providers=cpu, with_scores=True), frames, annotations)
    assert [g for g, _ in before] == [g for g, _ in after] == GRAPHS
    for t, ((graph, old), (_, new)) in enumerate(zip(before, after)):
        assert np.array_equal(new.labels, old.labels), f"frame {t} ({graph}): masks differ"
        # The same float32 operations, split at the frame encoder's outputs.
        np.testing.assert_allclose(new.scores, old.scores, rtol=0, atol=1e-5, err_msg=f"frame {t}")
    # The backbone's weights are in the features graph only; each self-contained step graph
    # holds them all (init drops the stride-4 branch it does not use).
    backbone = _large_initializers(shared.graphs["features"])
    assert backbone and backbone <= _large_initializers(separate.graphs["step"])
    for name in GRAPH_MODULES:
        assert not backbone & _large_initializers(shared.graphs[name]), name


def test_shared_encoder_export_gives_the_masks_of_the_self_contained_graphs_tiny(shared_export):
    _check_same_masks(shared_export(H, W, OBJECTS, WINDOW, shared_features=False),
                      shared_export(H, W, OBJECTS, WINDOW))


@pytest.mark.slow
def test_shared_encoder_export_gives_the_masks_of_the_self_contained_graphs_full_hodor(tmp_path):
    torch.manual_seed(0)
    model = build_model("hodor").eval()
    _check_same_masks(
        export_streaming(model, tmp_path / "separate", H, W, OBJECTS, WINDOW,
                         shared_features=False),
        export_streaming(model, tmp_path / "shared", H, W, OBJECTS, WINDOW),
    )


@torch.no_grad()
def test_torch_backend_running_the_split_modules_equals_the_unsplit_modules(model):
    frames, annotations = _video()
    spec = StreamSpec(H, W, OBJECTS, WINDOW)
    split = _run(TorchBackend(model, spec, with_scores=True), frames, annotations)
    state = empty_state(model, spec)
    for t, (frame, (graph, out)) in enumerate(zip(frames, split)):
        images = [torch.from_numpy(frame)]
        if t in annotations:
            images.append(torch.from_numpy(annotations[t]))
        labels, scores, *state = GRAPH_MODULES[graph](model, spec)(*images, *state)
        assert torch.equal(torch.from_numpy(out.labels), labels), t
        assert torch.equal(torch.from_numpy(out.scores), scores), t


def test_format_version_1_exports_still_load_and_run_each_graph_alone(model, shared_export):
    v1 = shared_export(H, W, OBJECTS, WINDOW, shared_features=False)
    export = load_streaming_export(v1.directory)
    assert "frame_graphs" not in export.manifest
    assert {g: export.chain(g) for g in GRAPH_MODULES} == {g: (g,) for g in GRAPH_MODULES}
    assert export.state_infos()["fg"]["shape"] == [1, OBJECTS, WINDOW, model.config.dim]
