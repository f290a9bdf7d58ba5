"""Parity over time: first divergence, drift, state differences, localisation (injected fault
named at the right frame; state-only perturbation inherited), fp32 islands in fp16 exports."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import tempfile

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from softmask.cli import main
from softmask.data.io import write_label_png
from softmask.data.synthetic import generate_video
from softmask.eval.divergence import Tolerances, drift, state_differences
from softmask.eval.localize import (
    COMPUTED,
    INHERITED,
    OnnxProbes,
    TorchProbes,
    localize,
)
from softmask.eval.parity import compare_backends
from softmask.eval.plot import plot_parity
from softmask.export.frame_graphs import StreamSpec, empty_state
from softmask.export.mixed_precision import PrecisionPlan, groups_of_module, mixed_precision_model
from softmask.export.streaming import export_graphs, write_manifest
from softmask.runtime import OnnxRuntimeBackend, TorchBackend
from softmask.runtime.backend import FrameOutput

H, W, T, WINDOW = 64, 96, 4, 3


@pytest.fixture(scope="module")
def video():
    """A short synthetic video with two objects, both annotated on frame 0."""
    clip = generate_video(13, H, W, T, max_objects=2, enter_probability=0.0)
    assert clip.num_objects == 2 and set(clip.first_frames.values()) == {0}
    return list(clip.frames), clip.annotations(), dict(enumerate(clip.labels))


@pytest.fixture(scope="module")
def spec():
    return StreamSpec(H, W, 2, WINDOW)


def test_identical_backends_have_no_first_divergence(model, spec, video, tmp_path):
    frames, annotations, truth = video
    report = compare_backends(
        TorchBackend(model, spec, with_scores=True),
        TorchBackend(model, spec, with_scores=True),
        frames,
        annotations,
        truth,
    )
    assert report.passed and report.first_divergence is None and report.context is None
    assert report.drift["trend"] == "none"
    assert [f.graph for f in report.frames] == ["init", "step", "step", "step"]
    for row in report.frames:
        assert set(row.state) == {"fg_next", "fg_valid_next", "bg_next", "bg_valid_next",
                                  "active_next"}
        assert all(d.max == 0.0 and d.mean == 0.0 for d in row.state.values())
        assert row.iou_reference == row.iou_candidate and row.f_reference == row.f_candidate
    data = report.to_dict()
    assert data["first_divergence"] is None and data["passed"]
    json.dumps(data)


class _PerturbState:
    """Wraps a backend; just before its ``at``-th frame runs a graph, noise is added to the valid
    object descriptors of its state (the graph itself computes as the inner backend's)."""

    def __init__(self, inner, at: int) -> None:
        self.inner, self.at, self.count = inner, at, 0
        self.name, self.device, self.spec = "perturbed", inner.device, inner.spec
        self.precision, self.with_scores = inner.precision, inner.with_scores

    def reset(self):
        self.inner.reset()
        self.count = 0

    def advance_empty(self):
        self.inner.advance_empty()
        self.count += 1

    def read_state(self):
        return self.inner.read_state()

    def write_state(self, state):
        self.inner.write_state(state)

    def run(self, graph, frame, annotation=None) -> FrameOutput:
        if self.count == self.at:
            state = self.inner.read_state()
            noise = np.random.default_rng(0).normal(0, 0.5, state["fg"].shape)
            state["fg"] = state["fg"] + noise * state["fg_valid"][..., None]
            self.inner.write_state(state)
        self.count += 1
        return self.inner.run(graph, frame, annotation)


def test_state_only_perturbation_is_inherited_not_computed(model, spec, video):
    frames, annotations, _ = video
    candidate = _PerturbState(TorchBackend(model, spec, with_scores=True), at=2)
    report = compare_backends(TorchBackend(model, spec, with_scores=True), candidate, frames,
                              annotations)
    first = report.first_divergence
    assert first is not None and first.frame == 2 and first.graph == "step"
    assert all(f.state["fg_next"].max == 0.0 for f in report.frames[:2])
    probes = TorchProbes(model, spec)
    found = localize(report.context, candidate, Tolerances(), probes, probes)
    assert found.verdict == INHERITED and found.rerun == []
    # Read after frame 1 the states agreed: the change happened between frames.
    assert found.input_state["fg_next"].max == 0.0
    assert any("between frames" in note for note in found.notes)
    assert found.culprit is None and all(not m.over for m in found.modules)
    # The re-run put the candidate's own state back.
    after = state_differences(candidate.read_state(), report.context.reference_state_out)
    assert after["fg_next"].max > 0


def test_fault_in_one_module_is_named_first_culprit_at_its_frame(model, spec, video, tmp_path):
    frames, annotations, truth = video
    faulty = copy.deepcopy(model)
    culprit = "decoder.attn_layers.1.cross_attn"
    with torch.no_grad():
        weight = faulty.get_submodule(culprit).q_proj.weight
        weight += 0.2 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
    plan = PrecisionPlan()
    graphs = export_graphs(faulty, tmp_path / "export", spec, plan, ("init", "step"))
    export = write_manifest(tmp_path / "export", faulty, spec, plan, graphs)
    candidate = OnnxRuntimeBackend(export, with_scores=True)
    report = compare_backends(TorchBackend(model, spec, with_scores=True), candidate, frames,
                              annotations, truth)
    first = report.first_divergence
    # Frame 0 (init) runs no decoder; the first decoded frame is 1.
    assert (first.frame, first.graph) == (1, "step") and first.quantity in ("labels", "scores")
    assert report.frames[0].state["fg_next"].max < 1e-4
    found = localize(report.context, candidate, Tolerances(), TorchProbes(model, spec),
                     OnnxProbes(faulty, spec, plan, tmp_path / "probes"))
    assert found.verdict == COMPUTED
    assert found.culprit == culprit
    labels = [m.module for m in found.modules]
    assert labels.index(culprit) > labels.index("decoder.attn_layers.0.norm2")
    for row in found.modules[: labels.index(culprit)]:
        assert row.relative < 1e-4, row  # everything before it agrees to fp32 rounding
    assert groups_of_module(culprit, model) == ["decoder"]
    assert groups_of_module("encoder.attn_layers.0.cross_attn", model) == [
        "attention", "descriptors"]
    assert not found.notes or "reproduce" not in " ".join(found.notes)
    data = report.to_dict()
    assert data["first_divergence"] == {"frame": 1, "graph": "step", "quantity": first.quantity,
                                        "value": first.value, "tolerance": first.tolerance}
    assert set(data["drift"]) >= {"trend", "slope_per_frame"}
    assert data["frames"][1]["state"]["fg_next"]["max"] > 0
    png = plot_parity(report, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drift_growing_flat_and_none():
    frames = list(range(10))
    assert drift(frames, [1e-3 * (1 + t) for t in frames])["trend"] == "growing"
    assert drift(frames, [1e-3] * 10)["trend"] == "flat"
    assert drift(frames, [0.0] * 10)["trend"] == "none"
    assert drift(frames[:2], [1e-3, 2e-3])["trend"] == "too short"


def test_state_difference_ignores_slots_invalid_in_both():
    ref = {"fg": np.zeros((1, 2, 3, 4), np.float32), "fg_valid": np.zeros((1, 2, 3), bool),
           "bg": np.zeros((1, 1, 3, 4), np.float32), "bg_valid": np.ones((1, 1, 3), bool),
           "active": np.array([[True, False]])}
    cand = copy.deepcopy(ref)
    cand["fg"][0, 1] = 7.0  # slot 2 is invalid in both: never read by the model
    ref["fg_valid"][0, 0, 2] = cand["fg_valid"][0, 0, 2] = True
    cand["fg"][0, 0, 2] = 0.25
    diffs = state_differences(ref, cand)
    assert diffs["fg_next"].max == 0.25 and diffs["fg_next"].mean == pytest.approx(0.25)
    cand["active"][0, 1] = True
    assert state_differences(ref, cand)["active_next"].max == 1.0


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: v.type.tensor_type.elem_type for v in values}


def test_fp32_islands_keep_the_op_contract_and_the_state_in_fp32(model, spec, video, tmp_path):
    frames, annotations, _ = video
    plan = PrecisionPlan(True, ("attention", "descriptors"))
    assert plan.name == "fp16+descriptors+attention" and plan.state_dtype == torch.float32
    path = export_graphs(model, tmp_path, spec, PrecisionPlan(True, ("attention",)), ("init",))
    graph = onnx.load(str(path["init"]))
    types = _elem_types(graph)
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    inputs = {i.name: i.type.tensor_type.elem_type for i in graph.graph.input}
    assert inputs["fg"] == inputs["bg"] == f16  # descriptors not kept: fp16 state
    nodes = [n for n in graph.graph.node if n.op_type == "SoftMaskedAttention"]
    assert len(nodes) == 2
    for node in nodes:
        # query, key, value and output share T = float32 inside the island; mask and alpha too.
        assert [types[name] for name in node.input] == [f32] * 5
        assert types[node.output[0]] == f32
    weights = {i.name: i.data_type for i in graph.graph.initializer}
    assert f16 in weights.values() and f32 in weights.values()
    # Island edges: casts fp16 -> fp32 on the way in and fp32 -> fp16 on the way out.
    edges = {
        (types.get(n.input[0]), next(a.i for a in n.attribute if a.name == "to"))
        for n in graph.graph.node
        if n.op_type == "Cast"
    }
    assert (f16, f32) in edges and (f32, f16) in edges
    # The mixed torch model computes the init frame close to fp32.
    mixed = mixed_precision_model(model, plan)
    state = empty_state(model, spec, dtype=plan.state_dtype)
    from softmask.export.frame_graphs import InitFrame

    frame = torch.from_numpy(frames[0])
    ann = torch.from_numpy(annotations[0])
    with torch.no_grad():
        out_mixed = InitFrame(mixed, spec)(frame, ann, *state)
        out_ref = InitFrame(model, spec)(frame, ann, *empty_state(model, spec))
    assert out_mixed[2].dtype == torch.float32
    assert torch.allclose(out_mixed[2], out_ref[2], atol=5e-2)


# The command line: flags, clean-up, output.


@pytest.fixture(scope="module")
def video_folder(video, tmp_path_factory):
    """``video`` as PNG files (lossless): frames/, annotations/ (frame 0), truth/."""
    frames, annotations, truth = video
    root = tmp_path_factory.mktemp("parity-video")
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(_mkdir(root / "frames") / f"{t:05d}.png")
        write_label_png(root / "truth" / f"{t:05d}.png", truth[t])
    write_label_png(root / "annotations" / "00000.png", annotations[0])
    return root


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def _ours(folder) -> list[str]:
    """softmask's entries in a temporary folder (torch may add caches of its own)."""
    return [p.name for p in folder.iterdir() if p.name.startswith("softmask")]


def _parity(root, *flags) -> list[str]:
    return ["parity", str(root / "frames"), "--annotations", str(root / "annotations"),
            "--window", str(WINDOW), *flags]


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """The temporary folder parity uses when no --work-dir is given."""
    folder = _mkdir(tmp_path / "tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_parity_command_reports_plots_and_cleans_up(video_folder, temp_dir, tmp_path, capsys):
    report_path, png = tmp_path / "report.json", tmp_path / "curves.png"
    rc = main(_parity(video_folder, "--reference", "torch", "--candidate", "torch",
                      "--ground-truth", str(video_folder / "truth"),
                      "--report", str(report_path), "--plot", str(png)))
    out = capsys.readouterr().out
    assert rc == 0
    assert "first divergence: none" in out and "drift: none" in out and "PASS" in out
    data = json.loads(report_path.read_text())
    assert data["first_divergence"] is None and data["drift"]["trend"] == "none"
    assert data["jf_reference"] == data["jf_candidate"] is not None
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert _ours(temp_dir) == []  # its temporary folder is gone


def test_parity_command_prints_each_failure_once(video_folder, temp_dir, capsys):
    rc = main(_parity(video_folder, "--reference", "torch", "--candidate", "torch",
                      "--min-agreement", "1.01", "--no-localize"))
    captured = capsys.readouterr()
    assert rc == 1
    fails = [line for line in captured.out.splitlines() if line.startswith("FAIL ")]
    assert fails == [f"FAIL frame {t} ({g}): labels agree on 1.000000 of pixels < 1.01"
                     for t, g in enumerate(["init", "step", "step", "step"])]
    assert "FAIL" not in captured.err and "labels agree" not in captured.err
    assert _ours(temp_dir) == []


def _fake_export(folder, precision="fp32", objects=2):
    """A folder ``load_streaming_export`` accepts (graph files are placeholders)."""
    graphs = {}
    for name in ("init", "step", "annotate"):
        (_mkdir(folder) / f"{name}.onnx").write_bytes(name.encode())
        graphs[name] = {"file": f"{name}.onnx",
                        "sha256": hashlib.sha256(name.encode()).hexdigest()}
    spec = {"height": H, "width": W, "num_objects": objects, "temporal_window": WINDOW,
            "min_dim": None, "max_dim": None}
    manifest = {"format": "softmask-streaming", "format_version": 1, "precision": precision,
                "spec": spec, "graphs": graphs}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--candidate", "torch", "--fp16"], "--fp16"),
        (["--reference", "onnxruntime", "--fp16"], "--fp16"),
        (["--candidate", "torch", "--providers", "CPUExecutionProvider"], "--providers"),
        (["--engine-cache", "engines"], "--engine-cache"),
        (["--candidate", "torch", "--work-dir", "work"], "--work-dir"),
        (["--no-localize", "--module-tolerance", "0.1"], "--module-tolerance"),
        (["--export-dir", "EXPORT", "--fp16"], "--fp16"),
        (["--export-dir", "EXPORT", "--objects", "3"], "--objects 3"),
    ],
)
def test_parity_flags_that_would_not_take_effect_are_refused(
    video_folder, temp_dir, tmp_path, capsys, monkeypatch, flags, named
):
    monkeypatch.setattr("softmask.export.streaming.export_streaming", _no_export)
    export = str(_fake_export(tmp_path / "export"))
    rc = main(_parity(video_folder, *[export if f == "EXPORT" else f for f in flags]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and named in err[0], err
    assert _ours(temp_dir) == []


def _no_export(*args, **kwargs):
    raise AssertionError("parity exported before refusing")


def test_parity_with_an_unavailable_backend_exits_4_before_exporting(
    video_folder, temp_dir, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails
    monkeypatch.setattr("softmask.export.streaming.export_streaming", _no_export)
    rc = main(_parity(video_folder, "--candidate", "tensorrt"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 4 and len(err) == 1 and "TensorRT" in err[0]
    assert _ours(temp_dir) == []


def test_parity_reads_a_video_file_as_softmask_run_does(tmp_path):
    from PIL import Image

    from softmask.eval.parity import read_video
    from tests.videos import first_annotation, moving_objects, write_label_png, write_video

    frames = moving_objects(6)
    clip = write_video(tmp_path / "clip.mp4", frames, lossless=True)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    first = write_label_png(tmp_path / "first.png", first_annotation())
    truth = tmp_path / "truth"
    truth.mkdir()
    write_label_png(truth / "00002.png", first_annotation())
    from_video = read_video(clip, [first], truth)
    from_folder = read_video(folder, first, truth)
    assert all((a == b).all() for a, b in zip(from_video[0], from_folder[0]))
    assert from_video[1].keys() == from_folder[1].keys() == {0}
    assert from_video[2].keys() == from_folder[2].keys() == {2}
