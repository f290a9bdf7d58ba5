"""The command line as a careful user meets it: every flag takes effect or is refused with one
line naming it (exit code 2), nothing half-written is left behind, the export cache spares a
second run its export, and logs stay readable. The CLI runs as a subprocess where the exit code
of a process, its logging, stdout or a signal matter, and in this process otherwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pausing import interrupt_at
from tests.videos import first_annotation, moving_objects, write_label_png

REPO = Path(__file__).resolve().parent.parent
T = 12
TIMEOUT_S = 300


def softmask(*args: object, env: dict[str, str] | None = None, timeout: float = TIMEOUT_S):
    """Run ``softmask ARGS`` in a subprocess; the CompletedProcess (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "softmask.cli", *map(str, args)],
        check=False, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO,
    )


class _Result:
    """What ``in_process`` returns: the fields of a CompletedProcess the tests read."""

    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


def in_process(capsys, *args: object) -> _Result:
    """``softmask ARGS`` through ``softmask.cli.main`` in this process: for runs whose checks read
    the exit code, stderr and the files written (the same as in a subprocess), not for runs that
    set process-wide state (``--threads``) or whose logging or stdout is checked."""
    from softmask.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    return _Result(code, capsys.readouterr().err)


def one_line_error(result, *fragments: str, code: int = 2) -> str:
    """Assert ``result`` failed with ``code`` and exactly one stderr line holding ``fragments``."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """(frames folder named 0.png ... 11.png, the same frames zero-padded, annotation folder for
    the padded names, first-frame annotation PNG)."""
    root = tmp_path_factory.mktemp("video")
    frames = moving_objects(T)
    plain, padded, annotations = root / "plain", root / "padded", root / "ann"
    for folder in (plain, padded, annotations):
        folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(plain / f"{t}.png")
        Image.fromarray(frame).save(padded / f"{t:05d}.png")
    write_label_png(annotations / "00000.png", first_annotation())
    first = write_label_png(root / "first.png", first_annotation())
    return plain, padded, annotations, first


@pytest.fixture(scope="module")
def export_dir(shared_export):
    """An fp32 export of the checkpoint's weights for 64x96 frames, 2 objects, window 3."""
    return shared_export(64, 96, 2, 3).directory


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((out / "masks").glob("*.png"))}


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_frames_named_by_ffmpeg_percent_d_run_in_natural_order(video, checkpoint, tmp_path,
                                                               capsys):
    plain, padded, _, first = video
    for name, folder in (("plain", plain), ("padded", padded)):
        result = in_process(capsys, "-q", "run", folder, "--annotations", first, "--out",
                            tmp_path / name, "--backend", "torch", "--checkpoint", checkpoint)
        assert result.returncode == 0, result.stderr
    plain_masks, padded_masks = _masks(tmp_path / "plain"), _masks(tmp_path / "padded")
    assert sorted(plain_masks, key=int) == [str(t) for t in range(T)]
    for t in range(T):  # a recurrent model: any other order would change later masks
        np.testing.assert_array_equal(plain_masks[str(t)], padded_masks[f"{t:05d}"])
    report = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert report["per_frame"]["index"] == list(range(T))


def test_two_frames_with_one_stem_are_an_error_naming_both(video, tmp_path, capsys):
    _, padded, annotations, _ = video
    frames = tmp_path / "frames"
    frames.mkdir()
    for png in sorted(padded.glob("*.png"))[:3]:
        (frames / png.name).write_bytes(png.read_bytes())
    Image.open(frames / "00001.png").convert("RGB").save(frames / "00001.jpg")
    result = in_process(capsys, "run", frames, "--annotations", annotations, "--out",
                        tmp_path / "out")
    one_line_error(result, "00001.jpg", "00001.png", "same name")
    assert _files(tmp_path / "out") == []


@pytest.mark.parametrize("extra, fragments", [
    (["--fp16"], ["--fp16: the export in", "is fp32"]),
    (["--objects", "5"], ["--objects 5: the export in", "was made with 2"]),
    (["--window", "5"], ["--window 5: the export in", "was made with 3"]),
    (["--min-dim", "48"], ["--min-dim 48: the export in", "was made with None"]),
    (["--checkpoint", "tiny"], ["--checkpoint: the export in", "already holds its weights"]),
    (["--engine-cache", "x"], ["--engine-cache applies to --backend tensorrt"]),
])
def test_export_dir_refuses_settings_it_cannot_honour(video, export_dir, tmp_path, extra,
                                                      fragments, capsys):
    _, padded, annotations, _ = video
    result = in_process(capsys, "run", padded, "--annotations", annotations, "--out", tmp_path / "out",
                      "--export-dir", export_dir, *extra)
    one_line_error(result, *fragments)
    assert _files(tmp_path / "out") == []


@pytest.mark.parametrize("extra, fragments", [
    (["--fp16"], ["--fp16 applies to the exported graphs"]),
    (["--export-dir", "x"], ["--export-dir holds ONNX graphs"]),
    (["--providers", "CPUExecutionProvider"], ["--providers applies to --backend onnxruntime"]),
    (["--cache-dir", "x"], ["--cache-dir: the torch backend exports nothing"]),
])
def test_torch_refuses_flags_of_exported_backends(video, tmp_path, extra, fragments, capsys):
    _, padded, annotations, _ = video
    result = in_process(capsys, "run", padded, "--annotations", annotations, "--out", tmp_path / "out",
                      "--backend", "torch", *extra)
    one_line_error(result, *fragments)


def test_rerun_into_the_same_out_needs_overwrite_or_resume(video, checkpoint, tmp_path, capsys):
    _, padded, annotations, _ = video
    out = tmp_path / "out"
    args = ["-q", "run", padded, "--annotations", annotations, "--out", out, "--backend", "torch",
            "--checkpoint", checkpoint]
    assert in_process(capsys, *args).returncode == 0
    stale = out / "masks" / "99999.png"
    stale.write_bytes((out / "masks" / "00000.png").read_bytes())  # an earlier, longer run's
    before = {name: (out / name).read_bytes() for name in _files(out)}
    one_line_error(in_process(capsys, *args), "holds an earlier run's outputs", "--overwrite",
                   "--resume")
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    assert in_process(capsys, *args, "--overwrite").returncode == 0
    assert not stale.exists()
    report = json.loads((out / "report.json").read_text())
    assert report["masks_written"] == len(list((out / "masks").glob("*.png"))) == T


def test_second_run_hits_the_export_cache_and_exports_nothing(video, checkpoint, tmp_path):
    _, padded, annotations, _ = video
    env = {"SOFTMASK_CACHE": str(tmp_path / "cache")}
    reports, exports = [], []
    for run in ("first", "second"):
        result = softmask("-v", "-q", "run", padded, "--annotations", annotations,
                          "--out", tmp_path / run, "--checkpoint", checkpoint, "--threads", "2",
                          env=env)
        assert result.returncode == 0, result.stderr
        exports.append({p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.onnx")})
        reports.append(json.loads((tmp_path / run / "report.json").read_text()))
        if run == "first":
            # -v: softmask's own steps, none of the exporter's chatter.
            lines = result.stderr.strip().splitlines()
            assert any(line.startswith("INFO softmask") for line in lines)
            assert not [line for line in lines if "onnx_ir" in line or "onnxscript" in line]
            # torch, imported on first use, resets its loggers: its exporter stays quiet too.
            assert not [line for line in lines if "torch/onnx" in line], result.stderr
            assert len(lines) < 30, result.stderr
    first, second = reports
    assert first["setup"]["export"] == "cache miss" and first["setup"]["export_s"] > 0
    assert second["setup"]["export"] == "cache hit" and "export_s" not in second["setup"]
    assert first["setup"]["export_dir"] == second["setup"]["export_dir"]
    assert first["threads"] == second["threads"] == 2
    # The work done, not the time taken: the second run wrote no graph and touched none.
    assert exports[0] and exports[1] == exports[0]
    assert _masks(tmp_path / "first").keys() == _masks(tmp_path / "second").keys()


def test_output_paths_that_cannot_take_the_outputs_fail_before_the_model_runs(
        video, tmp_path, capsys, monkeypatch):
    _, padded, annotations, _ = video
    monkeypatch.setenv("SOFTMASK_CACHE", str(tmp_path / "cache"))
    as_file = tmp_path / "out-file"
    as_file.write_text("not a folder")
    masks_file = tmp_path / "masks-file"
    masks_file.mkdir()
    (masks_file / "masks").write_text("not a folder")
    for out, fragment in (
        (as_file, "out-file: output path is a file, not a folder"),
        (masks_file, "masks-file/masks: output path is a file, not a folder"),
        # Writing under /sys fails even for root: a read-only place on every Linux machine.
        (Path("/sys/kernel/softmask-test-out"), "softmask-test-out: cannot write output"),
    ):
        result = in_process(capsys, "run", padded, "--annotations", annotations, "--out", out)
        one_line_error(result, fragment)
    assert not (tmp_path / "cache").exists(), "nothing was exported"


def test_bad_checkpoints_and_numbers_are_one_line(video, tmp_path, capsys):
    _, padded, annotations, _ = video
    text = tmp_path / "notes.pth"
    text.write_text("these are my notes, not weights")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    for path in (text, noise):
        result = in_process(capsys, "run", padded, "--annotations", annotations, "--out",
                            tmp_path / "out", "--backend", "torch", "--checkpoint", path)
        line = one_line_error(result, f"{path}: not a PyTorch checkpoint")
        assert "trust_pickle" not in line
    for flag, value in (("--min-dim", "0"), ("--objects", "-3"), ("--window", "two")):
        result = in_process(capsys, "run", padded, "--annotations", annotations, "--out",
                            tmp_path / "out", flag, value)
        one_line_error(result, f"argument {flag}: must be a positive integer")


def test_export_requires_objects_and_is_all_or_nothing(checkpoint, tmp_path, capsys):
    result = in_process(capsys, "export", "--height", "64", "--width", "96", "--out",
                        tmp_path / "e")
    one_line_error(result, "the following arguments are required: --objects")
    target = tmp_path / "export"
    # Interrupted once the first graph is in the staging folder: the export has started writing.
    # Ctrl-C, and SIGTERM (what systemd, Docker and Kubernetes send) the same way.
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        done = interrupt_at(
            "export-graph-written",
            ["-q", "export", "--checkpoint", checkpoint, "--height", "64", "--width", "96",
             "--objects", "2", "--out", target],
            tmp_path / "paused", sig=sig,
        )
        assert done.returncode == code, (sig, done.stderr)
        assert "softmask export: " in done.stderr and "Traceback" not in done.stderr
        assert not target.exists() and not list(tmp_path.glob(".export.partial-*"))


def test_void_pixels_are_ignored_not_made_object_255(video, checkpoint, tmp_path, capsys):
    _, padded, _, _ = video
    labels = first_annotation()
    labels[:3, :] = 255  # DAVIS void border
    annotation = write_label_png(tmp_path / "void.png", labels)
    result = in_process(capsys, "-q", "run", padded, "--annotations", annotation, "--out",
                        tmp_path / "out", "--backend", "torch", "--checkpoint", checkpoint)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["spec"]["num_objects"] == 2
    assert max(int(m.max()) for m in _masks(tmp_path / "out").values()) <= 2


def test_fp16_on_the_cpu_provider_warns(video, shared_export, tmp_path):
    _, padded, annotations, _ = video
    fp16 = shared_export(64, 96, 2, 3, fp16=True).directory
    result = softmask("-q", "run", padded, "--annotations", annotations, "--out", tmp_path / "out",
                      "--export-dir", fp16, "--fp16", "--providers", "CPUExecutionProvider")
    assert result.returncode == 0, result.stderr
    assert "fp16 graphs on the CPU are slow" in result.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text())["precision"] == "fp16"


def test_an_unavailable_backend_exits_4_before_exporting(video, tmp_path, capsys, monkeypatch):
    _, padded, annotations, _ = video
    monkeypatch.setenv("SOFTMASK_CACHE", str(tmp_path / "cache"))
    result = in_process(capsys, "run", padded, "--annotations", annotations, "--out",
                        tmp_path / "out", "--providers", "NoSuchExecutionProvider")
    one_line_error(result, "NoSuchExecutionProvider", "unavailable", code=4)
    assert not (tmp_path / "cache").exists()


def test_data_synth_and_train_run_from_the_command_line(tmp_path):
    result = softmask("-q", "data", "synth", "--out", tmp_path / "synth", "--videos", "2",
                      "--seed", "5", "--height", "64", "--width", "96", "--frames", "4")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "synth" / "JPEGImages" / "480p").iterdir())) == 2
    result = softmask("-q", "train", "--out", tmp_path / "run", "--steps", "2", "--videos", "4",
                      "--batch-size", "1", "--height", "64", "--width", "96", "--threads", "1",
                      "--checkpoint-every", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "latest.pth").is_file()


def test_run_a_video_file_with_one_annotation_png_and_an_overlay(export_dir, tmp_path, capsys):
    from tests.videos import write_video

    frames = moving_objects(T)
    clip = write_video(tmp_path / "clip.mp4", frames, fps=12, lossless=True)
    first = write_label_png(tmp_path / "first.png", first_annotation())
    result = softmask("-q", "run", clip, "--annotations", first, "--out", tmp_path / "out",
                      "--export-dir", export_dir, "--overlay")
    assert result.returncode == 0, result.stderr
    assert "frames ->" in result.stdout and "latency (decode to mask written)" in result.stdout
    import av

    with av.open(str(tmp_path / "out" / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        overlay = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == 12
    assert len(overlay) == T and overlay[0].shape == frames[0].shape
    images = tmp_path / "images"
    images.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(images / f"{t:05d}.png")
    result = in_process(capsys, "-q", "run", images, "--annotations", first, "--out",
                        tmp_path / "folder", "--export-dir", export_dir)
    assert result.returncode == 0, result.stderr
    from_video, from_images = _masks(tmp_path / "out"), _masks(tmp_path / "folder")
    assert from_video.keys() == from_images.keys() and len(from_video) == T
    assert all((from_video[k] == from_images[k]).all() for k in from_video)

    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    result = in_process(capsys, "-q", "run", clip, "--annotations", first, "--out",
                        tmp_path / "cut", "--export-dir", export_dir)
    line = one_line_error(result, f"{clip}: cannot decode frame")
    reached = int(line.split("cannot decode frame ")[1].split()[0])
    assert sorted(_masks(tmp_path / "cut")) == [f"{t:05d}" for t in range(reached)]


def test_overwrite_keeps_the_earlier_outputs_when_the_run_fails_before_its_first_frame(
        video, checkpoint, tmp_path, capsys):
    _, padded, annotations, _ = video
    out = tmp_path / "out"
    args = ["-q", "run", padded, "--annotations", annotations, "--out", out, "--backend", "torch",
            "--checkpoint", checkpoint]
    assert in_process(capsys, *args).returncode == 0
    before = {name: (out / name).read_bytes() for name in _files(out)}
    bad = write_label_png(tmp_path / "bad.png", np.full((64, 96), 9, np.uint8))
    failed = in_process(capsys, "run", padded, "--annotations", bad, "--out", out, "--overwrite",
                        "--backend", "torch", "--checkpoint", checkpoint, "--objects", "2")
    one_line_error(failed, "bad.png", "object id(s) [9] exceed the 2 object slot(s)")
    assert {name: (out / name).read_bytes() for name in _files(out)} == before


def test_flags_that_cannot_apply_to_this_source_or_backend_are_refused(video, tmp_path, capsys):
    from tests.videos import write_video

    _, padded, annotations, first = video
    clip = write_video(tmp_path / "clip.mp4", moving_objects(4), lossless=True)
    env_cache = tmp_path / "cache"
    result = in_process(capsys, "run", clip, "--annotations", first, "--out", tmp_path / "a",
                        "--fps", "10")
    one_line_error(result, "--fps sets the frame rate of a folder of frames", "clip.mp4")
    result = in_process(capsys, "run", padded, "--annotations", annotations, "--out",
                        tmp_path / "b", "--backend", "tensorrt", "--threads", "2",
                        "--cache-dir", env_cache)
    one_line_error(result, "--threads sets the CPU threads of torch and onnxruntime")
    assert not env_cache.exists(), "refused before any export"
