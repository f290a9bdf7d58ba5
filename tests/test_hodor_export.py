"""The full HODOR config (Swin-T backbone: shifted-window attention masks, relative position
bias, patch merging) through the streaming export and ONNX Runtime, against torch, over a short
video with an object appearing mid-video. Random weights, small frames: about two minutes of CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softmask.eval.parity import compare_backends
from softmask.export.streaming import export_streaming
from softmask.model import build_model
from softmask.runtime import OnnxRuntimeBackend, TorchBackend
from tests.videos import first_annotation, moving_objects

# 64x96 gives Swin 16x24 tokens at stride 4: windows of 7 need padding and shifted-window masks
# at every stage, the cases the tiny config (a CNN) never exercises.
H, W, OBJECTS, WINDOW, FRAMES = 64, 96, 2, 3, 5


@pytest.mark.slow
def test_full_hodor_in_onnxruntime_equals_torch(tmp_path):
    torch.manual_seed(0)
    model = build_model("hodor").eval()
    assert model.config.name == "hodor"
    export = export_streaming(model, tmp_path / "export", H, W, OBJECTS, WINDOW)
    frames = list(moving_objects(FRAMES, H, W))
    square_only = first_annotation(H, W) * (first_annotation(H, W) == 1)
    disc = (first_annotation(H, W) == 2).astype(np.uint8) * 2
    annotations = {0: square_only, 2: disc}  # object 2 appears at frame 2: init, step, annotate
    report = compare_backends(
        TorchBackend(model, export.spec, with_scores=True),
        OnnxRuntimeBackend(export, providers=["CPUExecutionProvider"], with_scores=True),
        frames, annotations, min_agreement=0.999, score_tolerance=1e-4,
    )
    assert [f.graph for f in report.frames] == ["init", "step", "annotate", "step", "step"]
    assert report.passed, report.failures
    assert report.max_abs_score_diff <= 1e-4
    assert min(f.label_agreement for f in report.frames) >= 0.999
