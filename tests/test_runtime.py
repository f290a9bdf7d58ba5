"""softmask.runtime: backends against the model's own video loop, the pipeline, its report and
its failure modes, the engine cache, the TensorRT backend's availability check, and parity."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softmask.data.io import davis_palette
from softmask.errors import BackendUnavailable, InputError
from softmask.eval.parity import compare_backends, mean_iou
from softmask.export.frame_graphs import StreamSpec
from softmask.files import FILE_MODE
from softmask.model import segment_video
from softmask.runtime import (
    OnnxRuntimeBackend,
    TensorRTBackend,
    TorchBackend,
    VideoStream,
    outputs,
    run_video,
)
from softmask.runtime.backend import FrameOutput
from softmask.runtime.engine_cache import EngineCache, engine_cache_key
from softmask.runtime.latency import latency_summary
from softmask.runtime.report import PIPELINE_STAGES

H, W, N, WINDOW, T = 64, 96, 3, 3, 6
# The graphs resize inside: short side 48 -> 48x72, padded to 64x96 (and back to 64x96 at the end).
MIN_DIM = 48


@pytest.fixture(scope="module")
def export(shared_export):
    return shared_export(H, W, N, WINDOW, min_dim=MIN_DIM)


def _box(label: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    out = np.zeros((H, W), np.uint8)
    out[y0:y1, x0:x1] = label
    return out


@pytest.fixture(scope="module")
def video():
    """Frames with a moving bright square on noise; object 1 annotated at frame 1, object 2
    appears at frame 3; frame 0 comes before any annotation."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 96, (T, H, W, 3), dtype=np.uint8)
    for t in range(T):
        frames[t, 10 + 2 * t : 40 + 2 * t, 20:50] = 230
    annotations = {1: _box(1, 12, 42, 20, 50), 3: _box(2, 30, 60, 60, 90)}
    return frames, annotations


def _write_video(folder: Path, frames: np.ndarray, annotations: dict) -> tuple[Path, Path]:
    images, labels = folder / "JPEGImages", folder / "Annotations"
    images.mkdir(parents=True)
    labels.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(images / f"{t:05d}.png")  # lossless: decoded == frames
    for t, ann in annotations.items():
        image = Image.fromarray(ann)
        image.putpalette(davis_palette().tobytes())
        image.save(labels / f"{t:05d}.png")
    return images, labels


def _stream(backend, frames, annotations):
    stream = VideoStream(backend)
    outputs, graphs = [], []
    for t, frame in enumerate(frames):
        outputs.append(stream.process(frame, annotations.get(t)))
        graphs.append(stream.last_graph)
    return outputs, graphs


def test_torch_backend_equals_the_models_video_loop(model, video):
    frames, annotations = video
    spec = StreamSpec(H, W, 2, WINDOW, min_dim=MIN_DIM)  # segment_video's N = largest label = 2
    outputs, graphs = _stream(TorchBackend(model, spec, with_scores=True), frames, annotations)
    labels, probs = segment_video(
        model, frames, annotations, temporal_window=WINDOW, min_dim=MIN_DIM, return_probs=True
    )
    assert graphs == ["none", "init", "step", "annotate", "step", "step"]
    for t, out in enumerate(outputs):
        np.testing.assert_array_equal(out.labels, labels[t])
        np.testing.assert_allclose(out.scores, probs[t], atol=1e-6)


def test_onnxruntime_equals_torch_with_an_object_appearing_mid_video(model, export, video):
    frames, annotations = video
    reference, _ = _stream(TorchBackend(model, export.spec, with_scores=True), frames, annotations)
    candidate, graphs = _stream(OnnxRuntimeBackend(export, with_scores=True), frames, annotations)
    assert graphs == ["none", "init", "step", "annotate", "step", "step"]
    for ref, out in zip(reference, candidate):
        assert (ref.labels == out.labels).mean() >= 0.999
        np.testing.assert_allclose(out.scores, ref.scores, atol=1e-4)
    assert (candidate[4].labels == 2).any(), "object 2 is tracked after it appeared"


def test_first_annotation_too_small_to_track_waits_for_the_next(model, export):
    # A 2-pixel object vanishes at stride 8: init keeps nothing, the next annotation is an init
    # again, and the ring buffer (which then holds that frame's background) advances meanwhile.
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (5, H, W, 3), dtype=np.uint8)
    annotations = {0: _box(1, 5, 6, 5, 7), 2: _box(1, 16, 48, 24, 72)}
    expected = segment_video(model, frames, annotations, temporal_window=WINDOW, min_dim=MIN_DIM)
    outputs, graphs = _stream(OnnxRuntimeBackend(export), frames, annotations)
    assert graphs == ["init", "none", "init", "step", "step"]
    for t, out in enumerate(outputs):
        assert (out.labels == expected[t]).mean() >= 0.999


def test_pipeline_writes_one_mask_per_frame_and_a_latency_report(model, export, video, tmp_path):
    frames, annotations = video
    images, labels = _write_video(tmp_path / "seq", frames, annotations)
    out = tmp_path / "out"
    report = run_video(
        images, labels, out, backend="onnxruntime", export_dir=export.directory, overlay=True
    )
    expected, _ = _stream(OnnxRuntimeBackend(export), frames, annotations)
    masks = sorted((out / "masks").iterdir())
    assert [m.name for m in masks] == [f"{t:05d}.png" for t in range(T)]
    for mask, want in zip(masks, expected):
        with Image.open(mask) as image:
            assert image.mode == "P"
            assert image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
            np.testing.assert_array_equal(np.asarray(image), want.labels)
    assert len(list((out / "overlay").glob("*.jpg"))) == T
    assert report == json.loads((out / "report.json").read_text())
    # Atomic writes keep the usual permissions (mkstemp alone makes files owner-only).
    for written in (masks[0], out / "report.json", *(out / "overlay").glob("*.jpg")):
        assert written.stat().st_mode & 0o777 == FILE_MODE, written
    assert report["completed"] and report["error"] is None
    assert report["frames_processed"] == report["frames_decoded"] == report["masks_written"] == T
    assert report["frames_dropped"] == 0
    assert report["backend"] == "onnxruntime" and report["precision"] == "fp32"
    assert report["graphs"] == {"none": 1, "init": 1, "step": 3, "annotate": 1}
    assert report["setup"]["export"] == "given" and "export_s" not in report["setup"]
    model_latency = report["model_latency"]
    assert model_latency["count"] == T - 1  # frame 0 runs no graph
    assert 0 < model_latency["p50_ms"] <= model_latency["p90_ms"] <= model_latency["max_ms"]
    assert report["per_frame"]["graph"][0] == "none" and report["per_frame"]["compute_ms"][0] == 0
    # The stages are contiguous: per frame they add up to the end-to-end latency.
    stage_sum = sum(report["stages"][s]["mean_ms"] for s in PIPELINE_STAGES)
    assert stage_sum == pytest.approx(report["latency"]["mean_ms"], rel=1e-6)
    per_frame = report["per_frame"]
    for t in range(T):
        total = sum(per_frame[f"{s}_ms"][t] for s in PIPELINE_STAGES)
        assert total == pytest.approx(per_frame["latency_ms"][t], abs=1e-3)


def test_a_failing_frame_keeps_earlier_masks_and_names_the_file(model, export, video, tmp_path):
    frames, annotations = video
    images, labels = _write_video(tmp_path / "seq", frames, annotations)
    (images / "00003.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="00003.png: cannot read frame"):
        run_video(images, labels, out, backend="onnxruntime", export_dir=export.directory)
    expected, _ = _stream(OnnxRuntimeBackend(export), frames[:3], annotations)
    written = sorted(p.name for p in (out / "masks").iterdir())
    assert written == ["00000.png", "00001.png", "00002.png"]  # complete files, no temporaries
    report = json.loads((out / "report.json").read_text())
    assert not report["completed"] and "00003.png: cannot read frame" in report["error"]
    assert report["masks_written"] == 3
    for t, want in enumerate(expected):
        with Image.open(out / "masks" / f"{t:05d}.png") as image:
            np.testing.assert_array_equal(np.asarray(image), want.labels)


def test_a_frame_of_another_size_names_the_file(model, export, video, tmp_path):
    frames, annotations = video
    images, labels = _write_video(tmp_path / "seq", frames, annotations)
    Image.fromarray(frames[2][:, :80]).save(images / "00002.png")
    # queue_size=1: the decoder is blocked on a full queue when the main thread fails.
    with pytest.raises(InputError, match=r"00002.png: frame must be uint8 \[64, 96, 3\]"):
        run_video(images, labels, tmp_path / "out", export_dir=export.directory, queue_size=1)


def test_a_mask_write_error_is_raised_after_the_queue_drains(export, video, tmp_path, monkeypatch):
    frames, annotations = video
    images, labels = _write_video(tmp_path / "seq", frames, annotations)
    out = tmp_path / "out"
    real_write = outputs.write_label_png

    def write_fails_at_frame_2(path, labels_map):
        if path.name == "00002.png":
            raise OSError(28, "No space left on device", str(path))
        real_write(path, labels_map)

    monkeypatch.setattr(outputs, "write_label_png", write_fails_at_frame_2)
    with pytest.raises(OSError, match="No space left"):
        run_video(images, labels, out, export_dir=export.directory, queue_size=1)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png"]
    assert not json.loads((out / "report.json").read_text())["completed"]


def test_bad_annotations_and_folders_are_input_errors_naming_the_file(export, video, tmp_path):
    frames, annotations = video
    images, labels = _write_video(tmp_path / "seq", frames, {**annotations, 4: _box(5, 0, 9, 0, 9)})
    with pytest.raises(InputError, match=r"00004.png: object id\(s\) \[5\] exceed the 3"):
        run_video(images, labels, tmp_path / "out", export_dir=export.directory)
    with pytest.raises(InputError, match="missing: no such folder, video file, URL or camera"):
        run_video(tmp_path / "missing", labels, tmp_path / "out", export_dir=export.directory)
    Image.fromarray(annotations[1]).save(labels / "99999.png")
    with pytest.raises(InputError, match=r"match no frame name"):
        run_video(images, labels, tmp_path / "out", export_dir=export.directory)


def test_latency_summary_hand_computed():
    summary = latency_summary([0.010, 0.020, 0.030, 0.040])
    # Linear interpolation between ranks: p50 = 25, p90 = 30 + 0.7 * 10, p99 = 30 + 0.97 * 10.
    assert summary["p50_ms"] == pytest.approx(25.0)
    assert summary["p90_ms"] == pytest.approx(37.0)
    assert summary["p99_ms"] == pytest.approx(39.7)
    assert summary["mean_ms"] == pytest.approx(25.0)
    assert summary["fps"] == pytest.approx(40.0)
    assert latency_summary([])["p50_ms"] is None


def test_davis_palette_first_colours():
    assert davis_palette()[:5].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
    ]


def test_engine_cache_key_depends_on_graph_version_gpu_and_settings():
    libraries = {"plugin_sha256": "a" * 64, "kernels_sha256": "b" * 64}
    base = engine_cache_key(b"graph", "10.14.1", "NVIDIA H100", {"precision": "fp32"}, libraries)
    assert base == engine_cache_key(b"graph", "10.14.1", "NVIDIA H100", {"precision": "fp32"}, libraries)
    others = [
        engine_cache_key(b"graph2", "10.14.1", "NVIDIA H100", {"precision": "fp32"}, libraries),
        engine_cache_key(b"graph", "10.15.0", "NVIDIA H100", {"precision": "fp32"}, libraries),
        engine_cache_key(b"graph", "10.14.1", "Orin", {"precision": "fp32"}, libraries),
        engine_cache_key(b"graph", "10.14.1", "NVIDIA H100", {"precision": "fp16"}, libraries),
    ]
    assert len({base, *others}) == 5


def test_engine_cache_builds_once(tmp_path):
    cache = EngineCache(tmp_path)
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"engine bytes"

    for _ in range(2):
        assert cache.get_or_build("step", "abc", build, {"gpu": "x"}) == b"engine bytes"
    assert len(builds) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-abc.engine", "step-abc.json"]


def test_tensorrt_backend_without_tensorrt_is_unavailable(export, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(BackendUnavailable, match="TensorRT Python bindings"):
        TensorRTBackend(export)


def test_tensorrt_backend_without_a_gpu_is_unavailable(export, monkeypatch):
    import fake_cuda

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    fake_cuda.install(monkeypatch, fake_cuda.FakeDriver(devices=()))
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        TensorRTBackend(export)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_backend_matches_torch(model, export, video, tmp_path):
    from softmask.plugins.library import library_path

    try:
        library_path()
    except BackendUnavailable as missing:  # a TensorRT host where the plugin is not built yet
        pytest.skip(f"needs the plugin library: {missing}")
    frames, annotations = video
    reference = TorchBackend(model, export.spec, with_scores=True)
    candidate = TensorRTBackend(export, cache_dir=tmp_path, with_scores=True)
    # TensorRT may use TF32 for fp32 convolutions and matrix products: looser than onnxruntime.
    report = compare_backends(
        reference, candidate, frames, annotations, min_agreement=0.99, score_tolerance=1e-2
    )
    assert report.passed, report.failures


def test_parity_of_torch_and_onnxruntime(model, export, video):
    frames, annotations = video
    labels = segment_video(model, frames, annotations, temporal_window=WINDOW, min_dim=MIN_DIM)
    truth = dict(enumerate(labels))
    report = compare_backends(
        TorchBackend(model, export.spec, with_scores=True),
        OnnxRuntimeBackend(export, with_scores=True),
        frames,
        annotations,
        ground_truth=truth,
    )
    assert report.passed, report.failures
    assert [f.graph for f in report.frames] == ["none", "init", "step", "annotate", "step", "step"]
    assert report.max_abs_score_diff < 1e-4
    # The torch backend is the model's loop, so it scores perfectly against its labels.
    assert report.mean_iou_reference == pytest.approx(1.0)


class _FlipFrame:
    """A backend that wraps another and relabels frame ``index``'s object 1 as background."""

    def __init__(self, inner, index: int) -> None:
        self.inner, self.index, self.count = inner, index, 0
        self.name, self.device, self.spec = "flipped", inner.device, inner.spec
        self.precision = inner.precision
        self.with_scores = inner.with_scores

    def reset(self):
        self.inner.reset()
        self.count = 0

    def advance_empty(self):
        self.inner.advance_empty()
        self.count += 1

    def run(self, graph, frame, annotation=None) -> FrameOutput:
        out = self.inner.run(graph, frame, annotation)
        if self.count == self.index:
            out.labels = np.where(out.labels == 1, 0, out.labels).astype(np.uint8)
        self.count += 1
        return out


def test_parity_reports_the_failing_frame(model, export, video):
    frames, annotations = video
    spec = export.spec
    report = compare_backends(
        TorchBackend(model, spec),
        _FlipFrame(TorchBackend(model, spec), index=2),
        frames,
        annotations,
    )
    assert not report.passed
    assert len(report.failures) == 1 and report.failures[0].startswith("frame 2: labels agree")
    assert report.frames[2].label_agreement < 1.0 and report.frames[3].label_agreement == 1.0


def test_mean_iou_hand_computed():
    truth = np.array([[1, 1, 0, 255]], np.uint8)
    prediction = np.array([[1, 0, 0, 0]], np.uint8)
    # object 1: |P & G| = 1, |P | G| = 2; object 2 absent from both -> 1.
    assert mean_iou(prediction, truth, 2) == pytest.approx((0.5 + 1.0) / 2)


def test_run_video_takes_arrays_and_equals_the_models_loop(model, video, tmp_path):
    frames, annotations = video
    report = run_video(
        list(frames),
        annotations,
        tmp_path,
        backend="torch",
        checkpoint=model,
        temporal_window=WINDOW,
    )
    expected = segment_video(model, frames, annotations, temporal_window=WINDOW)
    assert report["spec"]["num_objects"] == 2  # the largest annotated id
    for t in range(T):
        with Image.open(tmp_path / "masks" / f"{t:05d}.png") as image:
            np.testing.assert_array_equal(np.asarray(image), expected[t])
    with pytest.raises(InputError, match=r"annotates frame 9, but frames has 6 frames"):
        run_video(list(frames), {9: annotations[1]}, tmp_path / "again", backend="torch",
                  checkpoint=model)


def test_onnxruntime_threads_sleep_in_the_pipeline_and_bench_has_a_spinning_twin(model, export):
    from softmask.runtime.bench import _spin_waiting_twin

    backend = OnnxRuntimeBackend(export, threads=1)
    assert not backend.spin_wait
    twin = _spin_waiting_twin(backend)
    assert twin.spin_wait and twin.export is export and twin.threads == 1
    assert _spin_waiting_twin(TorchBackend(model, export.spec)) is None
