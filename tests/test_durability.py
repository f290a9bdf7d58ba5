"""Nothing lost, nothing leaked: SIGTERM keeps a run's work, a resume never shortens a video nor
mixes the masks of another job, statistics stay in bounded memory, URL credentials appear in no
output, and sources only use the network protocols they were given."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import tracemalloc

import numpy as np
import pytest

from softmask.data.io import read_label_png
from softmask.data.video import count_frames
from softmask.errors import InputError
from softmask.redact import redact
from softmask.runtime import open_source, run_video
from softmask.runtime.latency import FrameTable, stage_summary
from softmask.runtime.manifest import MANIFEST_NAME
from tests.pausing import interrupt_at
from tests.videos import (
    first_annotation,
    moving_objects,
    recording_http_server,
    write_label_png,
    write_video,
)

T = 10
PASSWORD = "s3cret-pa55word"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(mp4 of T frames, first-frame annotation PNG, another first-frame annotation PNG)."""
    root = tmp_path_factory.mktemp("clip")
    video = write_video(root / "clip.mp4", moving_objects(T), fps=25, lossless=True)
    annotation = write_label_png(root / "first.png", first_annotation())
    other = first_annotation()
    other[other == 2] = 0  # one object fewer: another job
    other[40:50, 10:20] = 2
    return video, annotation, write_label_png(root / "other.png", other)


def _interrupt_at_frame(count: int):
    def progress(processed: int, decoded: int, dropped: int) -> None:
        if processed == count:
            raise KeyboardInterrupt

    return progress


def test_sigterm_mid_run_exits_143_with_complete_masks_and_a_report(clip, checkpoint, tmp_path):
    video, annotation, _ = clip
    out = tmp_path / "out"
    done = interrupt_at(
        "run-frame-queued",
        ["-q", "run", video, "--annotations", annotation, "--out", out, "--backend", "torch",
         "--checkpoint", checkpoint, "--overlay"],
        tmp_path / "paused", sig=signal.SIGTERM, timeout_s=300,
    )
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "softmask run: terminated by SIGTERM"
    report = json.loads((out / "report.json").read_text())
    assert report["completed"] is False and report["error"] == "terminated by SIGTERM"
    masks = sorted((out / "masks").iterdir())
    # Paused after the first frame was queued: it is written whole, no later frame was started.
    assert [p.name for p in masks] == ["00000.png"] and report["masks_written"] == 1
    assert read_label_png(masks[0]).shape == (64, 96)
    assert count_frames(out / "overlay.mp4") == 1
    assert not [p for p in out.rglob(".*")], "no hidden partial files"


def test_an_interrupted_resume_keeps_the_longer_earlier_videos(clip, checkpoint, tmp_path):
    video, annotation, _ = clip
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_video(video, annotation, out, backend="torch", checkpoint=checkpoint, overlay=True,
                  progress=_interrupt_at_frame(6), queue_size=1)
    assert count_frames(out / "overlay.mp4") == 6
    (out / "masks" / "00005.png").unlink()  # so the resume has a mask to write
    with pytest.raises(KeyboardInterrupt):
        run_video(video, annotation, out, backend="torch", checkpoint=checkpoint, overlay=True,
                  resume=True, progress=_interrupt_at_frame(2), queue_size=1)
    assert count_frames(out / "overlay.mp4") == 6, "the 6-frame overlay is kept, not a 2-frame one"
    report = json.loads((out / "report.json").read_text())
    assert report["videos_kept"] == ["overlay.mp4"] and not report["completed"]
    report = run_video(video, annotation, out, backend="torch", checkpoint=checkpoint,
                       overlay=True, resume=True)
    assert count_frames(out / "overlay.mp4") == T and report["videos_kept"] == []
    assert report["masks_kept"] == 5 and report["masks_written"] == T - 5


def test_an_interrupted_resume_keeps_the_longer_label_video(clip, checkpoint, tmp_path):
    video, annotation, _ = clip
    out = tmp_path / "out"
    run_video(video, annotation, out, backend="torch", checkpoint=checkpoint, mask_video=True)
    with pytest.raises(KeyboardInterrupt):
        run_video(video, annotation, out, backend="torch", checkpoint=checkpoint,
                  mask_video=True, resume=True, progress=_interrupt_at_frame(3), queue_size=1)
    assert count_frames(out / "masks.mkv") == T


def test_a_resume_with_other_annotations_or_settings_is_refused(clip, checkpoint, tmp_path):
    video, annotation, other = clip
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_video(video, annotation, out, backend="torch", checkpoint=checkpoint,
                  progress=_interrupt_at_frame(3), queue_size=1)
    (out / "report.json").unlink()  # as a killed run leaves it: the manifest still tells
    with pytest.raises(InputError, match=r"made with another annotations\.0 "):
        run_video(video, other, out, backend="torch", checkpoint=checkpoint, resume=True)
    with pytest.raises(InputError, match=r"another backend\.spec\.temporal_window "):
        run_video(video, annotation, out, backend="torch", checkpoint=checkpoint, resume=True,
                  temporal_window=3)
    with pytest.raises(InputError, match=r"another outputs\.overlay "):
        run_video(video, annotation, out, backend="torch", checkpoint=checkpoint, resume=True,
                  overlay=True)
    (out / MANIFEST_NAME).unlink()
    with pytest.raises(InputError, match=f"has no {MANIFEST_NAME}.*pass --overwrite"):
        run_video(video, annotation, out, backend="torch", checkpoint=checkpoint, resume=True)
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{t:05d}.png" for t in range(3)]


def test_a_password_in_a_url_appears_nowhere_under_out_nor_in_the_log(
    clip, checkpoint, tmp_path, caplog
):
    video, annotation, _ = clip
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    from softmask.redact import RedactingFilter

    caplog.handler.addFilter(RedactingFilter())  # what the CLI's configure_logging installs
    with recording_http_server(video.parent) as (base, requests):
        url = base.replace("http://", f"http://viewer:{PASSWORD}@") + f"/{video.name}"
        report = run_video(url, annotation, out, backend="torch", checkpoint=checkpoint,
                           overlay=True, mask_video=True)
        with pytest.raises(InputError) as missing:
            open_source(url.replace(video.name, "missing.mp4"))
    assert requests, "the source was read over HTTP"
    assert report["source"]["name"] == url.replace(PASSWORD, "***")
    assert PASSWORD not in str(missing.value) and "viewer:***@" in str(missing.value)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"report.json", MANIFEST_NAME, "overlay.mp4", "masks.mkv"}
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in caplog.text


def test_redact_masks_passwords_and_lone_user_tokens():
    assert redact("rtsp://u:p@ss@cam:554/s?x=1") == "rtsp://u:***@cam:554/s?x=1"
    assert redact("open http://token@host/a and rtmp://a:b@c/d") == (
        "open http://***@host/a and rtmp://a:***@c/d")
    assert redact("http://host/path@x, /dev/video0") == "http://host/path@x, /dev/video0"


def test_a_local_playlist_naming_an_http_address_is_refused_without_a_request(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_video(served / "segment.ts", moving_objects(4), codec="libx264")
    with recording_http_server(served) as (base, requests):
        playlist = tmp_path / "list.m3u8"
        playlist.write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"
                            f"#EXTINF:1.0,\n{base}/segment.ts\n#EXT-X-ENDLIST\n")
        with pytest.raises(InputError, match=f"^{playlist}: ") as refused, \
                open_source(playlist) as source:
            source.first_frame()
    assert requests == [], "a local file made softmask fetch from the network"
    assert "refers to the network address http://127.0.0.1" in str(refused.value)


def test_a_url_scheme_without_a_whitelist_is_refused_in_one_line():
    with pytest.raises(InputError, match=r"ftp:// is not a supported video URL \(supported: "):
        open_source("ftp://user:pw@127.0.0.1/clip.mp4")


def test_frame_statistics_stay_in_bounded_memory_over_a_million_frames():
    from softmask.runtime.report import RunStats

    stats = RunStats()  # what the pipeline's writer thread fills, one frame at a time
    rng = np.random.default_rng(0)
    draws = rng.lognormal(np.log(0.02), 0.5, 8192)  # a 20 ms median with a long tail
    sizes = {}
    try:
        for frame in range(1_000_000):
            value = float(draws[frame % 8192])
            stats.add(frame, "step", {"decode": value, "compute": value / 2}, value,
                      value if frame % 3 == 0 else None, None, float(frame))
            # Traced over the last 300,000 frames only (tracing makes each frame ~4x slower);
            # both readings are taken while tracing, so a block allocated before and freed
            # during the window cannot look like a saving.
            if frame + 1 == 700_000:
                tracemalloc.start()
            if frame + 1 in (800_000, 1_000_000):
                sizes[frame + 1] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert sizes[1_000_000] - sizes[800_000] < 64 * 1024, sizes
    assert not stats.table.exact and stats.per_frame(0.0) is None
    estimate, exact = stats.table.summary("decode"), stage_summary(np.resize(draws, 1_000_000))
    assert estimate["count"] == 1_000_000
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        assert estimate[key] == pytest.approx(exact[key], rel=0.01), key
    assert estimate["max_ms"] == pytest.approx(exact["max_ms"], rel=1e-12)
    assert estimate["mean_ms"] == pytest.approx(exact["mean_ms"], rel=1e-9)
    assert stats.table.summary("model")["count"] == 333_334
    assert stats.table.summary("GPU compute")["count"] == 0


def test_frame_statistics_are_exact_up_to_their_limit():
    table = FrameTable(("a",), exact_frames=10_000)
    values = np.random.default_rng(1).random(9_000)
    for value in values:
        table.add((value,))
    assert table.exact and table.summary("a") == stage_summary(values)


def _entry(path, size: int, used: float) -> None:
    """A cache file of ``size`` bytes last modified at ``used`` (seconds since the epoch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (used, used))


def test_cache_prune_removes_the_least_recently_used_entries_down_to_the_size(tmp_path, capsys):
    from softmask.cli import main

    exports, engines = tmp_path / "exports", tmp_path / "engines"
    _entry(exports / "old" / "step.onnx", 4000, 1_000)
    os.utime(exports / "old", (1_000, 1_000))
    _entry(exports / "new" / "step.onnx", 4000, 3_000)
    os.utime(exports / "new", (3_000, 3_000))
    _entry(engines / "step-abc.engine", 3000, 2_000)
    _entry(engines / "step-abc.json", 100, 2_000)
    _entry(exports / ".export.partial-1" / "step.onnx", 9000, 500)  # being written: kept
    args = ["--cache-dir", exports, "--engine-cache", engines]
    assert main(["cache", "list", *map(str, args)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed[:3]] == [
        "exports/old", "engines/step-abc", "exports/new"]
    assert main(["cache", "prune", "--max-size", "5000", *map(str, args)]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert sorted(p.name for p in exports.iterdir()) == [".export.partial-1", "new"]
    assert list(engines.iterdir()) == []


def test_cache_prune_refuses_a_size_it_cannot_read(tmp_path, capsys):
    from softmask.cli import main

    assert main(["cache", "prune", "--max-size", "lots", "--cache-dir", str(tmp_path)]) == 2
    assert "--max-size 'lots': expected a size such as 500M" in capsys.readouterr().err


def test_the_export_cache_key_changes_with_the_onnx_and_onnxscript_versions(monkeypatch):
    from softmask.export.frame_graphs import StreamSpec
    from softmask.runtime import export_cache

    spec = StreamSpec(64, 96, 2, 3)
    versions = {"onnx": "1.17.0", "onnxscript": "0.2.0"}
    monkeypatch.setattr(export_cache, "package_version", versions.get)
    before = export_cache.export_key("m", spec, False)
    for name in versions:
        monkeypatch.setitem(versions, name, "9.9.9")
        after = export_cache.export_key("m", spec, False)
        assert after != before, name
        before = after


def test_a_camera_that_never_answers_is_refused_after_the_open_timeout():
    from softmask.runtime.sources import _open_within

    release = threading.Event()

    class _Stuck:
        """av, as a V4L2 device that never answers makes it: open blocks (until released)."""

        @staticmethod
        def open(spec, **options):
            release.wait(60)
            raise OSError("released by the test")

    try:
        with pytest.raises(InputError, match=r"^/dev/video7: did not open within 0.5 s"):
            _open_within(_Stuck, "/dev/video7", {}, 0.5, "/dev/video7")
    finally:
        release.set()


def test_sigterm_during_training_keeps_the_last_checkpoint_and_exits_143(tmp_path):
    from softmask.model.checkpoint import read_payload

    out = tmp_path / "run"
    done = interrupt_at(
        "train-checkpoint-saved",
        ["-q", "train", "--out", out, "--steps", "4", "--videos", "2", "--batch-size", "1",
         "--height", "64", "--width", "96", "--threads", "1", "--checkpoint-every", "1"],
        tmp_path / "paused", sig=signal.SIGTERM, timeout_s=300,
    )
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "softmask train: terminated by SIGTERM"
    assert read_payload(out / "latest.pth")["step"] == 1  # paused after the first checkpoint
    assert sorted(p.name for p in out.iterdir()) == ["latest.pth"], "no partial file, no final"
