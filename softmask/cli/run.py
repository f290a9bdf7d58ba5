"""``softmask run``, ``bench`` and ``demo``: segmenting a video (and timing it)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from softmask.cli.args import BackendArgs, ModelArgs, OutputArgs, StreamArgs, VideoArgs
from softmask.cli.common import ExportProgress, RunProgress, positive_int

_OBJECTS_HELP = "object slots N (default: the largest annotated id)"
_VIDEO = VideoArgs()
_MODEL = ModelArgs()
_STREAM = StreamArgs(_OBJECTS_HELP)
_BACKEND = BackendArgs()


def _cmd_run(args: argparse.Namespace) -> int:
    from softmask.runtime.outputs import prepare_output_dir
    from softmask.runtime.pipeline import run_source
    from softmask.runtime.report import run_summary
    from softmask.runtime.sources import open_source

    settings = _BACKEND.settings(args, args.backend)
    settings.check()
    out = prepare_output_dir(args.out, overwrite=args.overwrite, resume=args.resume)
    with open_source(args.source, fps=args.fps) as source:
        progress = RunProgress(args, source.frame_count)
        export_progress = ExportProgress(args)
        try:
            report = run_source(
                source, _VIDEO.annotations(args), out, settings,
                overlay=args.overlay, mask_video=args.mask_video, live=args.live,
                realtime=args.realtime, resume=args.resume, progress=progress,
                on_export=export_progress,
            )
        finally:
            export_progress.close()
            progress.close()
    print(run_summary(report, args.out))
    return 0


def add_run(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime import BACKENDS

    p = sub.add_parser("run", help="segment a video: label PNGs per frame, overlays, report")
    _VIDEO.add(p)
    p.add_argument("--out", required=True, help="output folder (masks/, overlay, report.json)")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    OutputArgs(resume=True).add(p)
    g = p.add_argument_group("live input")
    g.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="keep only the newest frame when the model falls behind, dropping and "
                        "counting the others (default: on for cameras and rtsp/rtmp/udp URLs)")
    g.add_argument("--realtime", action="store_true",
                   help="pace a file or folder at its frame rate, as a camera would deliver it")
    _MODEL.add(p)
    _STREAM.add(p)
    _BACKEND.add(p)
    p.set_defaults(handler=_cmd_run)


def _cmd_bench(args: argparse.Namespace) -> int:
    from softmask.runtime.bench import run_bench

    export_progress = ExportProgress(args)
    progress = RunProgress(args, args.frames)
    try:
        results = run_bench(
            args.source, _VIDEO.annotations(args), args.out,
            _BACKEND.settings(args, args.backend), warmup=args.warmup, repeats=args.repeats,
            max_frames=args.frames,
            fps=args.fps, progress=progress, on_export=export_progress,
            command_line="softmask " + " ".join(sys.argv[1:]),
        )
    finally:
        export_progress.close()
        progress.close()
    ratio = results["pipeline_to_model_only"]
    print(f"{results['backend']} ({results['device']}): model only "
          f"{results['model_only']['fps']:.1f} frames/s, full pipeline "
          f"{results['pipeline']['fps']:.1f} frames/s: ratio {ratio:.3f} "
          f"(first {results['warmup_frames']} frames excluded, medians of {args.repeats})")
    if results["model_only_spin_wait"] is not None:
        print(f"model only with ONNX Runtime's threads spin-waiting (its default) "
              f"{results['model_only_spin_wait']['fps']:.1f} frames/s: ratio "
              f"{results['pipeline_to_model_only_spin_wait']:.3f}")
    print(f"wrote {Path(args.out) / 'bench.json'}, bench.md, bench.png")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime import BACKENDS
    from softmask.runtime.bench import DEFAULT_WARMUP

    p = sub.add_parser("bench", help="how fast the full pipeline runs a stream, against the "
                                     "model alone on the same frames in memory")
    _VIDEO.add(p)
    p.add_argument("--out", required=True,
                   help="folder for bench.json, bench.md, bench.png and the pipeline's outputs")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    p.add_argument("--warmup", type=positive_int, default=DEFAULT_WARMUP,
                   help=f"frames excluded from throughput (default {DEFAULT_WARMUP})")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="alternate the two runs this many times and compare medians (default 1)")
    p.add_argument("--frames", type=positive_int,
                   help="bench only the first N frames (all are held in memory; default: all)")
    _MODEL.add(p)
    _STREAM.add(p)
    _BACKEND.add(p)
    p.set_defaults(handler=_cmd_bench)


def _cmd_op_demo(out_dir: Path) -> int:
    from softmask.demo import run_op_demo

    path, rows = run_op_demo(out_dir)
    print(f"exported {path} (2 SoftMaskedAttention nodes, function bodies for any ONNX runtime)")
    print(f"{'B':>3} {'I':>4} {'S':>6}  {'max |ORT - torch|':>18}  {'torch ms':>9}  {'ORT ms':>8}")
    for r in rows:
        print(f"{r.batch:>3} {r.queries:>4} {r.keys:>6}  {r.max_abs_error:>18.2e}  "
              f"{r.torch_ms:>9.2f}  {r.onnxruntime_ms:>8.2f}")
    worst = max(r.max_abs_error for r in rows)
    ok = worst < 1e-4
    print(f"parity {'OK' if ok else 'FAILED'}: worst max abs error {worst:.2e} (tolerance 1e-4, fp32)")
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from softmask.demo import DEMO_MIN_DIM, run_video_demo

    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="softmask-demo-"))
    if args.op:
        return _cmd_op_demo(out_dir)
    print("segmenting the embedded demo video (24 frames, 240x432) with the bundled tiny HODOR "
          f"model, resized to {DEMO_MIN_DIM} px inside the graphs ...")
    demo = run_video_demo(out_dir, checkpoint=args.checkpoint)
    print(f"video {demo['video']}: {demo['objects']} objects, first seen at frames "
          f"{demo['first_frames']} (annotations given there)")
    print(f"{'backend':<12} {'J&F':>6} {'J':>6} {'F':>6}  {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7}  output")
    for r in demo["backends"]:
        lat, s = r.report["model_latency"], r.scores
        print(f"{r.backend:<12} {s['J&F-Mean']:>6.3f} {s['J-Mean']:>6.3f} {s['F-Mean']:>6.3f}  "
              f"{lat['p50_ms']:>7.1f} {lat['p90_ms']:>7.1f} {lat['p99_ms']:>7.1f}  "
              f"{out_dir / r.backend}")
    agreement = demo["label_agreement"]
    ok = agreement >= 0.999
    print(f"parity torch vs onnxruntime: {agreement:.4%} of pixels agree "
          f"({'OK' if ok else 'FAILED'}, tolerance 99.9%)")
    return 0 if ok else 1


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment the embedded video with the bundled model in PyTorch "
                                    "and ONNX Runtime; latency, parity, J&F")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    p.add_argument("--checkpoint", help="use this checkpoint instead of the bundled model")
    p.add_argument("--op", action="store_true",
                   help="only the op-level check: export a two-layer soft-masked attention module, "
                        "compare ONNX Runtime with PyTorch")
    p.set_defaults(handler=_cmd_demo,
                   torch_for="the demo (PyTorch against ONNX Runtime)")
