"""softmask bench: both runs on the same frames, throughput after warm-up, the files it writes."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from softmask.model import save_checkpoint
from softmask.runtime.bench import run_bench
from softmask.runtime.report import PIPELINE_STAGES
from softmask.runtime.settings import RunSettings
from tests.videos import first_annotation, moving_objects, write_label_png, write_video

T, WARMUP = 10, 3


def test_bench_compares_the_pipeline_with_the_model_alone(model, tmp_path):
    video = write_video(tmp_path / "clip.mp4", moving_objects(T), lossless=True)
    annotation = write_label_png(tmp_path / "first.png", first_annotation())
    checkpoint = tmp_path / "tiny.pth"
    save_checkpoint(model, checkpoint)
    settings = RunSettings(backend="torch", checkpoint=checkpoint, temporal_window=3, threads=2)
    results = run_bench(video, [annotation], tmp_path / "bench", settings, warmup=WARMUP,
                        repeats=2, command_line="softmask bench ...")
    out = tmp_path / "bench"
    assert json.loads((out / "bench.json").read_text()) == results
    assert "| pipeline / model only |" in (out / "bench.md").read_text()
    with Image.open(out / "bench.png") as plot:
        assert plot.size[0] > 500
    assert len(list((out / "pipeline" / "masks").glob("*.png"))) == T
    assert results["frames"] == T and results["repeats"] == 2 and results["threads"] == 2
    for run in ("model_only", "pipeline"):
        assert len(results[run]["fps_per_repeat"]) == 2 and results[run]["fps"] > 0
    assert results["model_only"]["latency"]["count"] == T - WARMUP
    assert results["pipeline_to_model_only"] == pytest.approx(
        results["pipeline"]["fps"] / results["model_only"]["fps"])
    assert results["model_only"]["graphs"][:2] == ["init", "step"]
    stages = results["pipeline"]["stages"]
    total = sum(stages[s]["mean_ms"] for s in PIPELINE_STAGES)
    assert total == pytest.approx(results["pipeline"]["latency"]["mean_ms"], rel=1e-6)
    assert results["memory"]["peak_rss_mib"] > 0
    assert results["machine"]["cores"] >= 1
