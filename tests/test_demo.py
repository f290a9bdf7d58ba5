"""``softmask demo``, the README's first command: the bundled model segments the embedded video in
PyTorch and ONNX Runtime, scores both against the video's ground truth and compares them; ``--op``
checks the exported op alone."""

from __future__ import annotations

import re

import pytest

from softmask.cli import main
from softmask.demo import DEMO_BACKENDS, DEMO_FRAMES
from softmask.runtime.outputs import MASKS_DIR


@pytest.mark.slow  # exports the bundled model and runs 24 frames twice: about 20 s on 2 CPU cores
def test_the_demo_runs_both_backends_which_agree_and_score_alike(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"parity torch vs onnxruntime: .* of pixels agree \(OK", out), out
    jf = {}
    for backend in DEMO_BACKENDS:
        masks = sorted((tmp_path / backend / MASKS_DIR).glob("*.png"))
        assert len(masks) == DEMO_FRAMES, backend
        row = re.search(rf"^{backend}\s+([\d.]+) ", out, re.MULTILINE)
        assert row, out
        jf[backend] = float(row.group(1))
    # The same model through two runtimes: the scores differ by the few pixels that differ.
    assert abs(jf["torch"] - jf["onnxruntime"]) < 0.01, jf
    assert jf["torch"] > 0.5, jf  # it tracks: holding the first masks scores far lower


def test_the_op_demo_exports_the_op_and_onnxruntime_matches_torch(tmp_path, capsys):
    assert main(["demo", "--op", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "parity OK" in out, out
    assert list(tmp_path.glob("*.onnx")), "the exported op module is kept"
