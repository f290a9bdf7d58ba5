"""softmask precision: the greedy search's logic (fake evaluator) and the command on the bundled
tiny model with a short synthetic video."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from softmask.cli import main
from softmask.data.io import write_frame_jpeg, write_label_png
from softmask.data.synthetic import generate_video
from softmask.errors import InputError
from softmask.eval.precision import CandidateResult, choose_best, greedy_search, needed_graphs
from softmask.export.mixed_precision import FP32_GROUPS, PrecisionPlan
from softmask.export.streaming import load_streaming_export


def _fake(metrics: dict[str, float], culprits: dict[str, list[str]], latency=None):
    calls: list[str] = []

    def evaluate(plan: PrecisionPlan) -> CandidateResult:
        calls.append(plan.name)
        return CandidateResult(plan.name, list(plan.fp32_groups), metrics[plan.name],
                               latency_p50_ms=(latency or {}).get(plan.name, 1.0))

    def localize_culprit(result: CandidateResult) -> None:
        result.culprit_groups = culprits.get(result.name, [])
        result.culprit = "some.module" if result.culprit_groups else None

    return calls, evaluate, localize_culprit


def test_greedy_search_follows_the_culprits_until_the_bound_is_met():
    metrics = {"fp32": 0.80, "fp16": 0.70, "fp16+attention": 0.72, "fp16+descriptors": 0.78,
               "fp16+descriptors+norm": 0.799, "fp16+descriptors+attention": 0.79}
    culprits = {"fp16": ["attention", "descriptors"], "fp16+descriptors": ["norm"]}
    calls, evaluate, localize = _fake(metrics, culprits)
    results = greedy_search(evaluate, localize, max_drop=0.005)
    # fp16 misses; its culprit's groups are tried; the better one (descriptors) is kept and its
    # own culprit's group (norm) added, which meets the bound.
    assert calls == ["fp32", "fp16", "fp16+attention", "fp16+descriptors",
                     "fp16+descriptors+norm"]
    assert [r.meets_bound for r in results] == [True, False, False, False, True]
    assert results[1].metric_drop == pytest.approx(0.10)
    assert choose_best(results).name == "fp16+descriptors+norm"


def test_greedy_search_without_a_culprit_tries_every_remaining_group():
    metrics = {"fp32": 1.0, "fp16": 0.9, **{f"fp16+{g}": 0.9 for g in FP32_GROUPS}}
    metrics["fp16+features"] = 0.999
    calls, evaluate, localize = _fake(metrics, {})
    results = greedy_search(evaluate, localize, max_drop=0.005)
    assert calls == ["fp32", "fp16", *(f"fp16+{g}" for g in FP32_GROUPS)]
    assert choose_best(results).name == "fp16+features"


def test_fp16_meeting_the_bound_ends_the_search_and_is_chosen_over_fp32():
    calls, evaluate, localize = _fake({"fp32": 0.9, "fp16": 0.898}, {},
                                      latency={"fp32": 1.0, "fp16": 3.0})
    results = greedy_search(evaluate, localize, max_drop=0.005)
    assert calls == ["fp32", "fp16"]
    assert choose_best(results).name == "fp16"  # fewer fp32 groups wins over latency


def test_plan_names_round_trip_and_needed_graphs():
    plan = PrecisionPlan(True, ("norm", "descriptors"))
    assert plan.name == "fp16+descriptors+norm" and PrecisionPlan.parse(plan.name) == plan
    with pytest.raises(InputError, match="unknown fp32 group"):
        PrecisionPlan(True, ("everything",))
    with pytest.raises(InputError, match="need fp16"):
        PrecisionPlan(False, ("norm",))
    one = {0: np.ones((2, 2), np.uint8)}
    assert needed_graphs(one) == ("init", "step")
    assert needed_graphs({**one, 3: np.ones((2, 2), np.uint8)}) == ("init", "step", "annotate")


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """A 5-frame synthetic video (64x96) in DAVIS layout; the annotation is frame 0's."""
    clip = generate_video(13, 64, 96, 5, max_objects=2, enter_probability=0.0)
    root = tmp_path_factory.mktemp("video")
    for t, frame in enumerate(clip.frames):
        write_frame_jpeg(root / "frames" / f"{t:05d}.jpg", frame)
        write_label_png(root / "truth" / f"{t:05d}.png", clip.labels[t])
    write_label_png(root / "annotations" / "00000.png", clip.labels[0])
    return root


@pytest.mark.slow  # exports and runs every candidate plan: about 35 s on 2 CPU cores
def test_precision_command_on_the_tiny_model(video_folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["precision", str(video_folder / "frames"), "--annotations",
               str(video_folder / "annotations"), "--ground-truth", str(video_folder / "truth"),
               "--out", str(out), "--window", "3"])
    assert rc == 0
    report = json.loads((out / "precision.json").read_text())
    assert report["metric"] == "J&F" and report["max_drop"] == 0.005
    names = [c["name"] for c in report["candidates"]]
    assert names[:2] == ["fp32", "fp16"] and len(set(names)) == len(names)
    for c in report["candidates"]:
        assert 0.0 <= c["metric"] <= 1.0 and c["metric_drop"] is not None
        assert 0.0 <= c["worst_agreement"] <= 1.0 and c["latency_p50_ms"] > 0
        assert "first_divergence" in c and c["meets_bound"] == (c["metric_drop"] <= 0.005)
    best = next(c for c in report["candidates"] if c["name"] == report["best"])
    assert best["meets_bound"] and best["metric_drop"] <= 0.005
    export = load_streaming_export(out / "export")
    assert export.plan == PrecisionPlan.parse(report["best"])
    table = (out / "precision.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    printed = capsys.readouterr().out
    assert f"chosen: **{report['best']}**" in printed
    # A second run would overwrite the chosen export: refused, naming the folder.
    assert main(["precision", str(video_folder / "frames"), "--annotations",
                 str(video_folder / "annotations"), "--out", str(out)]) == 2
    assert "export exists" in capsys.readouterr().err


def _no_export(*args, **kwargs):
    raise AssertionError("the search exported before refusing")


@pytest.mark.parametrize(
    ("flags", "code", "named"),
    [
        (["--backend", "tensorrt", "--providers", "CPUExecutionProvider"], 2, "--providers"),
        (["--engine-cache", "engines"], 2, "--engine-cache"),
        (["--backend", "tensorrt", "--threads", "2"], 2, "--threads"),
        (["--max-jf-drop", "-1"], 2, "--max-jf-drop"),
        (["--fps", "30"], 2, "--fps"),
        (["--backend", "tensorrt"], 4, "TensorRT"),
    ],
)
def test_precision_refuses_before_exporting(video_folder, tmp_path, capsys, monkeypatch, flags,
                                            code, named):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails
    monkeypatch.setattr("softmask.export.streaming.export_graphs", _no_export)
    try:
        rc = main(["precision", str(video_folder / "frames"), "--annotations",
                   str(video_folder / "annotations"), "--out", str(tmp_path / "out"), *flags])
    except SystemExit as exit_:  # argparse refuses bad values itself
        rc = exit_.code
    assert rc == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert not (tmp_path / "out").exists()

