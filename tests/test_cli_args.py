"""The command line's argument groups (``softmask.cli.args``): each group's flags parse into the
settings the library takes, refusals come out with their texts, and building the parser imports
no PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from softmask.cli import main
from softmask.cli.args import (
    BackendArgs,
    ModelArgs,
    OutputArgs,
    ServeLimitArgs,
    ServeModelArgs,
    ServeStartArgs,
    StreamArgs,
    VideoArgs,
    refuse_given,
)
from softmask.cli.common import Parser
from softmask.errors import InputError
from softmask.eval.divergence import Divergence
from softmask.eval.parity import FrameParity, ParityReport
from softmask.runtime.report import run_summary
from softmask.serve.repository import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_STREAMS

REPO = Path(__file__).resolve().parent.parent


def _parser(*groups) -> Parser:
    parser = Parser(prog="softmask test")
    for group in groups:
        group.add(parser)
    return parser


def _fails(parser: Parser, argv: list[str], capsys) -> str:
    """argparse's error line for ``argv`` (exit code 2)."""
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("code", [
    "import softmask.cli",
    "import softmask.cli; softmask.cli.build_parser()",
    "from softmask.cli import args, common, data, export, parity, run, serve",
])
def test_importing_the_cli_and_building_its_parser_import_no_torch(code):
    # A subprocess: this test process has imported torch already (other tests, conftest).
    check = f"import sys\n{code}\nprint('torch' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            check=False, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_backend_group_parses_into_run_settings():
    backend = BackendArgs()
    parser = _parser(ModelArgs(), StreamArgs("slots"), backend)
    args = parser.parse_args([
        "--checkpoint", "m.pth", "--objects", "3", "--window", "5", "--min-dim", "240",
        "--max-dim", "640", "--export-dir", "exp", "--fp16", "--providers", "tensorrt", "cpu",
        "--engine-cache", "eng", "--cache-dir", "cache", "--threads", "2",
    ])
    settings = backend.settings(args, "tensorrt")
    assert (settings.backend, settings.checkpoint, settings.export_dir) == (
        "tensorrt", "m.pth", "exp")
    assert (settings.num_objects, settings.temporal_window, settings.min_dim,
            settings.max_dim) == (3, 5, 240, 640)
    assert settings.fp16 is True and list(settings.providers) == ["tensorrt", "cpu"]
    assert (settings.engine_cache_dir, settings.cache_dir, settings.threads) == (
        "eng", "cache", 2)
    unset = backend.settings(parser.parse_args([]), "onnxruntime")
    assert unset.checkpoint is None and unset.num_objects is None and unset.fp16 is False
    assert unset.export_dir is None and unset.providers is None and unset.threads is None


def test_a_backend_group_without_exports_has_no_export_flags(capsys):
    backend = BackendArgs(exports=False, threads_help="threads of ONNX Runtime")
    parser = _parser(ModelArgs(), StreamArgs("slots"), backend)
    for argv in (["--export-dir", "e"], ["--fp16"], ["--cache-dir", "c"]):
        assert f"unrecognized arguments: {' '.join(argv)}" in _fails(parser, argv, capsys)
    settings = backend.settings(parser.parse_args(["--threads", "4", "--engine-cache", "e"]),
                                "onnxruntime")
    assert settings.threads == 4 and settings.engine_cache_dir == "e"
    assert settings.export_dir is None and settings.fp16 is False and settings.cache_dir is None
    assert "threads of ONNX Runtime" in parser.format_help()


def test_stream_flags_refuse_non_positive_values(capsys):
    parser = _parser(StreamArgs("slots"))
    err = _fails(parser, ["--window", "0"], capsys)
    assert err == ("softmask test: error: argument --window: must be a positive integer, got 0 "
                   "(see softmask test --help)\n")


def test_video_group_keeps_annotations_in_order_and_refuses_fps_where_it_plays_no_part():
    video = VideoArgs()
    parser = _parser(video)
    args = parser.parse_args(["clip.mp4", "--annotations", "a.png", "--annotate", "5:b.png",
                              "--annotations", "c", "--fps", "12.5"])
    assert args.source == "clip.mp4" and args.fps == 12.5
    assert video.annotations(args) == ["a.png", "c", "5:b.png"]
    with pytest.raises(InputError, match=r"^--fps: parity compares frames one by one; their "
                                         r"rate plays no part$"):
        video.refuse_fps(args, "parity")
    video.refuse_fps(parser.parse_args(["clip.mp4", "--annotations", "a.png"]), "parity")


def test_output_group_offers_resume_only_where_asked(capsys):
    args = _parser(OutputArgs(resume=True)).parse_args(["--overlay", "--resume"])
    assert args.overlay and args.resume and not args.mask_video and not args.overwrite
    assert "unrecognized arguments: --resume" in _fails(_parser(OutputArgs(resume=False)),
                                                        ["--resume"], capsys)


def test_serve_limit_group_parses_limits_and_fills_defaults_only_when_resolved():
    parser = _parser(ServeLimitArgs())
    given = ServeLimitArgs.limits(parser.parse_args(["--max-streams", "3", "--idle-timeout",
                                                     "2.5", "--instances", "2", "--scores"]))
    assert given.resolved() == {"max_streams": 3, "idle_timeout_s": 2.5, "instances": 2,
                                "scores": True}
    unset = ServeLimitArgs.limits(parser.parse_args([]))
    assert (unset.max_streams, unset.idle_timeout_s, unset.instances, unset.scores) == (
        None, None, None, False)
    assert unset.resolved() == {"max_streams": DEFAULT_MAX_STREAMS,
                                "idle_timeout_s": DEFAULT_IDLE_TIMEOUT_S, "instances": 1,
                                "scores": False}


def test_serve_model_and_start_groups_parse_into_embedded_and_start_options():
    parser = _parser(ServeModelArgs(), ServeStartArgs(), ServeLimitArgs())
    args = parser.parse_args([
        "--checkpoint", "m.pth", "--height", "64", "--width", "96", "--objects", "3",
        "--window", "4", "--graphs", "python", "--max-streams", "2", "--host", "::1",
        "--http-port", "0", "--grpc-port", "9001", "--metrics-port", "9002",
        "--work-dir", "w", "--start-timeout", "30",
    ])
    settings = ServeModelArgs.settings(args)
    assert (settings.checkpoint, settings.export_dir, settings.num_objects,
            settings.temporal_window) == ("m.pth", None, 3, 4)
    options = ServeModelArgs.options(args)
    assert (options.height, options.width, options.graphs) == (64, 96, "python")
    assert options.limits.max_streams == 2 and options.limits.instances is None
    start = ServeStartArgs.options(args)
    assert (start.endpoints.host, start.endpoints.http_port, start.endpoints.grpc_port,
            start.endpoints.metrics_port) == ("::1", 0, 9001, 9002)
    assert (start.repo, start.work_dir, start.start_timeout_s, start.allow_remote) == (
        None, "w", 30.0, False)
    assert ServeModelArgs.settings(parser.parse_args(["--export", "e"])).export_dir == "e"


def test_refuse_given_names_the_first_flag_given():
    parser = _parser(ModelArgs(), StreamArgs("slots"))
    flags = {**ModelArgs.FLAGS, **StreamArgs.FLAGS}
    refuse_given(parser.parse_args([]), flags, "never")
    with pytest.raises(InputError, match=r"^--window: not here; drop --window$"):
        refuse_given(parser.parse_args(["--max-dim", "9", "--window", "3"]), flags, "not here")


@pytest.mark.parametrize(("argv", "line"), [
    (["export", "--hf-model", "d", "--height", "2", "--width", "2", "--out", "o", "--min-dim",
      "8"],
     ("softmask export: error: --min-dim: applies to HODOR's streaming export, not to "
      "--hf-model; drop --min-dim")),
    (["serve", "repo", "--export", "e", "--out", "o", "--graphs", "python", "--plugin", "p.so"],
     "softmask serve: error: --plugin: applies to --graphs tensorrt, not python; drop --plugin"),
    (["serve", "repo", "--export", "e", "--out", "o", "--skip-plans"],
     ("softmask serve: error: --skip-plans: applies to --graphs tensorrt, not in-process; drop "
      "--skip-plans")),
    (["serve", "start", "--repo", "r", "--instances", "2"],
     ("softmask serve: error: --instances: --repo r is written already, with its own model and "
      "limits (softmask serve repo sets them); drop --instances")),
    (["serve", "start", "--width", "96"],
     ("softmask serve: error: give --export DIR, or --height, --width and --objects to export "
      "the model (--checkpoint, default the bundled one) for that frame size")),
    (["precision", "clip.mp4", "--annotations", "a.png", "--out", "o", "--fps", "3"],
     ("softmask precision: error: --fps: the search compares frames one by one; their rate "
      "plays no part")),
])
def test_refusals_keep_their_texts(argv, line, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing exists there: each refusal comes before any reading
    assert main(argv) == 2
    assert capsys.readouterr().err == line + "\n"


def _frames(count: int) -> list[FrameParity]:
    return [FrameParity(frame=t, graph="step", label_agreement=0.9, max_abs_score_diff=0.5)
            for t in range(count)]


def test_parity_summary_says_the_verdict_the_first_divergence_and_caps_the_failures():
    failures = [f"frame {t}: labels agree on 0.9 < 0.999" for t in range(13)]
    report = ParityReport(
        reference="torch", candidate="onnxruntime", frames=_frames(13), min_agreement=0.9,
        max_abs_score_diff=0.5, min_agreement_required=0.999, score_tolerance=1e-4,
        state_tolerance=1e-3, failures=failures, drift={"trend": "flat"},
        first_divergence=Divergence(0, "init", "labels", 0.9, 0.999),
    )
    lines = report.summary().splitlines()
    assert lines[0] == "frames: 13, lowest label agreement 0.900000, largest score difference 0.5"
    assert lines[1] == "drift: flat"
    assert lines[2] == ("first divergence: frame 0: labels agree on 0.900000 of pixels < 0.999 "
                        "(init)")
    assert lines[3] == "FAIL frame 0 (step): labels agree on 0.9 < 0.999"
    assert sum(line.startswith("FAIL ") for line in lines) == 10
    assert lines[-2] == "... and 3 more failing frames (--report lists all)"
    assert lines[-1] == ("parity torch vs onnxruntime: FAIL (label agreement >= 0.999, score "
                         "diff <= 0.0001, descriptor diff <= 0.001)")
    assert report.summary(saved=True).splitlines()[-2].endswith("(all of them in --report)")
    passed = ParityReport("torch", "torch", _frames(2), 1.0, 0.0, 0.999, 1e-4)
    assert passed.summary().splitlines()[-1].startswith("parity torch vs torch: PASS")


def test_run_summary_lists_setup_latency_and_stage_means():
    report = {
        "backend": "onnxruntime", "device": "cpu", "precision": "fp32", "frames_processed": 24,
        "frames_dropped": 2, "achieved_fps": 30.0,
        "setup": {"export": "cache hit", "backend_init_s": 0.5},
        "latency": {"count": 24, "p50_ms": 10.0, "p90_ms": 12.0, "p99_ms": 15.0},
        "model_latency": {"count": 0},
        "stages": {"decode": {"mean_ms": 1.0}, "write": {"mean_ms": None}},
    }
    assert run_summary(report, "out").splitlines() == [
        "onnxruntime (cpu, fp32): 24 frames -> out; setup: backend init 0.5 s; export: cache hit",
        ("latency (decode to mask written): p50 10.0 ms, p90 12.0 ms, p99 15.0 ms; 30.0 fps, "
         "2 dropped"),
        "stage means (ms): decode 1.0",
    ]
