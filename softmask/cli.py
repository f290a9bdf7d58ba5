"""``softmask`` command line: one entry point, one subcommand per job.

Library modules log; this module decides what the user sees. A SoftmaskError becomes one line on
stderr and its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from softmask import __version__
from softmask.errors import InputError, SoftmaskError
from softmask.export.spec import SHARED_GRAPHS
from softmask.optional import require_torch
from softmask.redact import redact, redact_logging
from softmask.signals import exit_code, interrupt_reason, terminate_as_interrupt

logger = logging.getLogger("softmask")

Handler = Callable[[argparse.Namespace], int]
# Exporter loggers that report routine steps (constant folding, deduplication, optional
# packages) as INFO/WARNING on every export: silenced below -vv.
_NOISY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")
# Commands that always run the model in PyTorch (the `torch` extra); the others run exports, and
# their options that need torch (a checkpoint to export, --backend torch) say so themselves.
_TORCH_COMMANDS = {
    "demo": "the demo (PyTorch against ONNX Runtime)",
    "export": "exporting a model",
    "precision": "the precision search (exports each candidate)",
    "train": "training",
    "parity-image": "comparing an export with the transformers model",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) that name the command, e.g.
    ``softmask run: error: argument --min-dim: must be a positive integer, got 0``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _bar(args: argparse.Namespace, **kwargs):
    """A tqdm progress bar on stderr, silent with -q."""
    from tqdm import tqdm

    return tqdm(disable=args.quiet, dynamic_ncols=True, **kwargs)


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


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment the embedded video with the bundled model in PyTorch "
                                    "and ONNX Runtime; latency, parity, J&F")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    p.add_argument("--checkpoint", help="use this checkpoint instead of the bundled model")
    p.add_argument("--op", action="store_true",
                   help="only the op-level check: export a two-layer soft-masked attention module, "
                        "compare ONNX Runtime with PyTorch")
    p.set_defaults(handler=_cmd_demo)


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="model checkpoint (.pth, HODOR's format or ours); "
                                        "default: the bundled tiny model")


def _stream_arguments(p: argparse.ArgumentParser, objects_help: str) -> None:
    g = p.add_argument_group("stream settings (fixed by an export)")
    g.add_argument("--objects", type=_positive_int, help=objects_help)
    g.add_argument("--window", type=_positive_int,
                   help="temporal window W in frames (default 7)")
    g.add_argument("--min-dim", type=_positive_int,
                   help="resize the short side to this inside the graphs (default: keep size)")
    g.add_argument("--max-dim", type=_positive_int, help="cap the long side at this")


def _backend_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--export-dir", help="run this streaming export (`softmask export`) instead of "
                                        "exporting the checkpoint")
    g.add_argument("--fp16", action="store_true",
                   help="float16 graphs (onnxruntime, tensorrt); meant for GPUs")
    g.add_argument("--providers", nargs="+",
                   help="ONNX Runtime execution providers, full names or tensorrt (TensorRT with the "
                        "plugin, then CUDA), cuda, cpu (default: CUDA if present, then CPU)")
    g.add_argument("--engine-cache", help="TensorRT engine cache folder")
    g.add_argument("--cache-dir", help="export cache folder (default: $SOFTMASK_CACHE/exports or "
                                       "~/.cache/softmask/exports)")
    g.add_argument("--threads", type=_positive_int,
                   help="CPU threads of torch / ONNX Runtime (default: their own)")


def _video_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE",
                   help="folder of frames (JPEG/PNG), video file (mp4, mkv, webm, avi, ...), URL "
                        "(rtsp://, http(s)://, ...) or camera (/dev/video0, camera:0)")
    p.add_argument("--annotations", action="append", required=True, metavar="PNG|INDEX:PNG|DIR",
                   help="a label PNG for frame 0, INDEX:PNG for frame INDEX, or a folder of "
                        "PNGs named like the frames (or by frame index for videos); repeatable")
    p.add_argument("--annotate", action="append", default=[], metavar="INDEX:PNG",
                   help="one more annotated frame; repeatable")
    p.add_argument("--fps", type=_positive_float,
                   help="frame rate of a folder of frames (default 24; videos carry their own)")


def _run_settings(args: argparse.Namespace, backend: str):
    """RunSettings of the model, stream and backend flags; a flag the command lacks (precision
    has no --export-dir, --fp16 or --cache-dir) is unset."""
    from softmask.runtime import RunSettings

    return RunSettings(
        backend=backend, checkpoint=args.checkpoint, export_dir=getattr(args, "export_dir", None),
        num_objects=args.objects, temporal_window=args.window, min_dim=args.min_dim,
        max_dim=args.max_dim, fp16=getattr(args, "fp16", False), providers=args.providers,
        engine_cache_dir=args.engine_cache, cache_dir=getattr(args, "cache_dir", None),
        threads=args.threads,
    )


class _ExportProgress:
    """Export progress on stderr: one line when exporting starts, then a bar over the graphs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._bar = None

    def __call__(self, graph: str) -> None:
        if self._bar is None:
            self._bar = _bar(self._args, total=len(SHARED_GRAPHS), desc="exporting graphs",
                             unit="graph")
        else:
            self._bar.update(1)
        self._bar.set_postfix_str(graph)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.close()


def _cmd_export_hf(args: argparse.Namespace) -> int:
    from softmask.convert.mask2former import export_mask2former, load_hf_model

    _refuse_given(args, {"checkpoint": "--checkpoint", "objects": "--objects", "window": "--window",
                         "min_dim": "--min-dim", "max_dim": "--max-dim", "fp16": "--fp16"},
                  "applies to HODOR's streaming export, not to --hf-model")
    if args.attention != "plugin":
        raise InputError(f"--attention {args.attention}: applies to HODOR's streaming export, "
                         "not to --hf-model (its masked attention is the op's hard mode); drop "
                         "--attention")
    model = load_hf_model(args.hf_model)
    out = export_mask2former(model, args.height, args.width, args.out, source=str(args.hf_model))
    print(f"wrote {out}: model.onnx + manifest.json")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from softmask.export import export_streaming
    from softmask.runtime import resolve_model
    from softmask.runtime.settings import DEFAULT_WINDOW

    if args.hf_model is not None:
        return _cmd_export_hf(args)
    if args.objects is None:
        raise InputError("the following arguments are required: --objects")
    model = resolve_model(args.checkpoint)
    progress = _ExportProgress(args)
    try:
        export = export_streaming(
            model, args.out, args.height, args.width, args.objects,
            temporal_window=args.window or DEFAULT_WINDOW, fp16=args.fp16, min_dim=args.min_dim,
            max_dim=args.max_dim, progress=progress, attention=args.attention,
        )
    finally:
        progress.close()
    print(f"wrote {export.directory}: " + ", ".join(sorted(export.graphs)) + " + manifest.json")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the per-frame streaming graphs (ONNX) of a model")
    _model_arguments(p)
    p.add_argument("--height", type=_positive_int, required=True, help="frame height in pixels")
    p.add_argument("--width", type=_positive_int, required=True, help="frame width in pixels")
    p.add_argument("--out", required=True,
                   help="output folder (new or empty; written completely or not at all)")
    p.add_argument("--fp16", action="store_true", help="float16 graphs (meant for GPUs)")
    p.add_argument("--attention", choices=("plugin", "function", "onnx-attention"),
                   default="plugin",
                   help="how the soft-masked attention is written: plugin (the TensorRT plugin's "
                        "node with a standard-op body; default), function (the body's plain ops), "
                        "onnx-attention (ONNX's Attention op, opset 23)")
    _stream_arguments(p, "object slots N: object ids 1..N may appear (required for HODOR)")
    p.add_argument("--hf-model", metavar="DIR",
                   help="a transformers save_pretrained folder of "
                        "Mask2FormerForUniversalSegmentation to export instead (model.onnx, "
                        "hard-masked attention as the op; needs softmask[hf])")
    p.set_defaults(handler=_cmd_export)


def _print_run_summary(report: dict, out: str) -> None:
    setup, stages = report["setup"], report["stages"]
    setup_line = ", ".join(
        f"{key[:-2].replace('_', ' ')} {value:.1f} s"
        for key, value in setup.items() if key.endswith("_s")
    )
    export = f"; export: {setup['export']}" if setup.get("export") else ""
    print(f"{report['backend']} ({report['device']}, {report['precision']}): "
          f"{report['frames_processed']} frames -> {Path(out)}; setup: {setup_line}{export}")
    lat, model = report["latency"], report["model_latency"]
    if lat["count"]:
        dropped = f", {report['frames_dropped']} dropped" if report["frames_dropped"] else ""
        print(f"latency (decode to mask written): p50 {lat['p50_ms']:.1f} ms, p90 "
              f"{lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms; "
              f"{report['achieved_fps']:.1f} fps{dropped}")
    if model["count"]:
        print(f"model (upload, graph, download): p50 {model['p50_ms']:.1f} ms, p90 "
              f"{model['p90_ms']:.1f} ms over {model['count']} frames")
    means = ", ".join(f"{name} {stages[name]['mean_ms']:.1f}" for name in stages
                      if stages[name]["mean_ms"] is not None)
    if means:
        print(f"stage means (ms): {means}")


class _RunProgress:
    """The pipeline's progress bar (frames/s; processed and dropped frames in live mode), opened
    at the first frame so that setup (export) time does not count in its rate."""

    def __init__(self, args: argparse.Namespace, total: int | None) -> None:
        self._args, self._total = args, total
        self._bar = None

    def __call__(self, processed: int, decoded: int, dropped: int) -> None:
        if self._bar is None:
            self._bar = _bar(self._args, total=self._total, desc="segmenting", unit="frame")
        self._bar.n = decoded
        if dropped:
            self._bar.set_postfix(processed=processed, dropped=dropped, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _cmd_run(args: argparse.Namespace) -> int:
    from softmask.runtime.outputs import prepare_output_dir
    from softmask.runtime.pipeline import run_source
    from softmask.runtime.sources import open_source

    settings = _run_settings(args, args.backend)
    settings.check()
    out = prepare_output_dir(args.out, overwrite=args.overwrite, resume=args.resume)
    with open_source(args.source, fps=args.fps) as source:
        progress = _RunProgress(args, source.frame_count)
        export_progress = _ExportProgress(args)
        try:
            report = run_source(
                source, [*args.annotations, *args.annotate], out, settings,
                overlay=args.overlay, mask_video=args.mask_video, live=args.live,
                realtime=args.realtime, resume=args.resume, progress=progress,
                on_export=export_progress,
            )
        finally:
            export_progress.close()
            progress.close()
    _print_run_summary(report, args.out)
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime import BACKENDS

    p = sub.add_parser("run", help="segment a video: label PNGs per frame, overlays, report")
    _video_arguments(p)
    p.add_argument("--out", required=True, help="output folder (masks/, overlay, report.json)")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    _output_arguments(p, resume=True)
    g = p.add_argument_group("live input")
    g.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="keep only the newest frame when the model falls behind, dropping and "
                        "counting the others (default: on for cameras and rtsp/rtmp/udp URLs)")
    g.add_argument("--realtime", action="store_true",
                   help="pace a file or folder at its frame rate, as a camera would deliver it")
    _model_arguments(p)
    _stream_arguments(p, "object slots N (default: the largest annotated id)")
    _backend_arguments(p)
    p.set_defaults(handler=_cmd_run)


def _cmd_bench(args: argparse.Namespace) -> int:
    from softmask.runtime.bench import run_bench

    export_progress = _ExportProgress(args)
    progress = _RunProgress(args, args.frames)
    try:
        results = run_bench(
            args.source, [*args.annotations, *args.annotate], args.out,
            _run_settings(args, args.backend), warmup=args.warmup, repeats=args.repeats,
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


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime import BACKENDS
    from softmask.runtime.bench import DEFAULT_WARMUP

    p = sub.add_parser("bench", help="how fast the full pipeline runs a stream, against the "
                                     "model alone on the same frames in memory")
    _video_arguments(p)
    p.add_argument("--out", required=True,
                   help="folder for bench.json, bench.md, bench.png and the pipeline's outputs")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    p.add_argument("--warmup", type=_positive_int, default=DEFAULT_WARMUP,
                   help=f"frames excluded from throughput (default {DEFAULT_WARMUP})")
    p.add_argument("--repeats", type=_positive_int, default=1,
                   help="alternate the two runs this many times and compare medians (default 1)")
    p.add_argument("--frames", type=_positive_int,
                   help="bench only the first N frames (all are held in memory; default: all)")
    _model_arguments(p)
    _stream_arguments(p, "object slots N (default: the largest annotated id)")
    _backend_arguments(p)
    p.set_defaults(handler=_cmd_bench)


def _cmd_parity(args: argparse.Namespace) -> int:
    from softmask.eval.divergence import Tolerances, describe
    from softmask.eval.parity import ParityOptions, parity_video

    overrides = {"min_agreement": args.min_agreement, "score": args.score_tolerance,
                 "state": args.state_tolerance, "module": args.module_tolerance}
    if args.fps is not None:
        raise InputError("--fps: parity compares frames one by one; their rate plays no part")
    if args.no_localize and args.module_tolerance is not None:
        raise InputError("--module-tolerance applies to localisation, which --no-localize skips")
    if args.plot:
        import matplotlib  # noqa: F401  (fail before the long work when it is missing)
    export_progress = _ExportProgress(args)
    try:
        report = parity_video(
            args.source, [*args.annotations, *args.annotate],
            _run_settings(args, args.candidate),
            ParityOptions(
                reference=args.reference, ground_truth=args.ground_truth,
                work_dir=args.work_dir, localize=not args.no_localize, on_export=export_progress,
                tolerances=None if all(v is None for v in overrides.values()) else (
                    Tolerances.for_precision("fp16" if args.fp16 else "fp32").replace(**overrides)),
            ),
        )
    finally:
        export_progress.close()
    if args.report:
        report.save(args.report)
    if args.plot:
        from softmask.eval.plot import plot_parity

        plot_parity(report, args.plot)
    print(f"frames: {len(report.frames)}, lowest label agreement {report.min_agreement:.6f}, "
          f"largest score difference {report.max_abs_score_diff}")
    if report.jf_reference is not None:
        print(f"J&F: {report.reference} {report.jf_reference:.4f}, {report.candidate} "
              f"{report.jf_candidate:.4f}")
    drift = report.drift
    if drift.get("slope_per_frame") is not None:
        print(f"drift: {drift['trend']} ({drift['quantity']}: {drift['start']:.3g} -> "
              f"{drift['end']:.3g} over {drift['frames']} frames)")
    else:
        print(f"drift: {drift.get('trend')}")
    first = report.first_divergence
    print(f"first divergence: {describe(first) + f' ({first.graph})' if first else 'none'}")
    loc = report.localization
    if loc is not None:
        print(f"frame {loc.frame} ({loc.graph}) from the reference's input state: "
              f"{loc.verdict or 'no verdict'}")
        if loc.modules:
            print(loc.table())
            print(f"first culprit: {loc.culprit or 'none'}")
        for note in loc.notes:
            print(f"note: {note}")
    shown = 10
    by_frame: dict[str, list[str]] = {}
    for failure in report.failures:
        where, _, what = failure.partition(": ")
        by_frame.setdefault(where, []).append(what)
    for where, what in list(by_frame.items())[:shown]:
        graph = report.frames[int(where.split()[1])].graph
        print(f"FAIL {where} ({graph}): " + "; ".join(what))
    if len(by_frame) > shown:
        hint = " (all of them in --report)" if args.report else " (--report lists all)"
        print(f"... and {len(by_frame) - shown} more failing frames{hint}")
    t = report
    print(f"parity {args.reference} vs {args.candidate}: {'PASS' if report.passed else 'FAIL'} "
          f"(label agreement >= {t.min_agreement_required}, score diff <= {t.score_tolerance}, "
          f"descriptor diff <= {t.state_tolerance})")
    return 0 if report.passed else 1


def _add_parity(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime import BACKENDS

    p = sub.add_parser("parity", help="run one video through two backends and compare them over "
                                      "time; localise the first divergence")
    _video_arguments(p)
    p.add_argument("--reference", choices=BACKENDS, default="torch")
    p.add_argument("--candidate", choices=BACKENDS, default="onnxruntime")
    p.add_argument("--ground-truth", help="folder of ground-truth label PNGs (adds J and F per "
                                          "frame per backend)")
    g = p.add_argument_group("tolerances (defaults depend on the candidate's precision; "
                             "docs/parity.md)")
    g.add_argument("--min-agreement", type=float,
                   help="fraction of pixels whose labels must agree, per frame (fp32 0.999, "
                        "fp16 0.99)")
    g.add_argument("--score-tolerance", type=float,
                   help="largest allowed |score difference| (fp32 1e-4, fp16 1e-2)")
    g.add_argument("--state-tolerance", type=float,
                   help="largest allowed |descriptor difference| in the state (fp32 1e-3, "
                        "fp16 5e-2)")
    g.add_argument("--module-tolerance", type=float,
                   help="localisation: largest module output difference relative to its scale "
                        "(fp32 1e-3, fp16 1e-2)")
    p.add_argument("--no-localize", action="store_true",
                   help="skip localising the first diverging frame")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--plot", help="draw the divergence curves into this PNG")
    p.add_argument("--work-dir", help="keep the graphs localisation exports here (default: a "
                                      "temporary folder, removed afterwards)")
    _model_arguments(p)
    _stream_arguments(p, "object slots N (default: the largest annotated id)")
    _backend_arguments(p)
    for action in p._actions:
        if action.dest == "fp16":
            action.help = "export the candidate in float16 (loosens the default tolerances)"
    p.set_defaults(handler=_cmd_parity)


def _cmd_parity_image(args: argparse.Namespace) -> int:
    from softmask.eval.image_parity import image_parity

    report = image_parity(args.images, args.hf_model, args.export, args.tolerance)
    if args.report:
        report.save(args.report)
    print(report.summary())
    return 0 if report.passed else 1


def _add_parity_image(sub: argparse._SubParsersAction) -> None:
    from softmask.eval.image_parity import DEFAULT_TOLERANCE

    p = sub.add_parser("parity-image", help="compare an --hf-model export on ONNX Runtime with "
                                            "the transformers model on a folder of images")
    p.add_argument("images", help="folder of .jpg/.png images")
    p.add_argument("--hf-model", required=True, metavar="DIR",
                   help="the transformers save_pretrained folder the export was made from")
    p.add_argument("--export", required=True, help="folder written by softmask export --hf-model")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest relative output difference (default {DEFAULT_TOLERANCE:g})")
    p.add_argument("--report", help="write the JSON report here")
    p.set_defaults(handler=_cmd_parity_image)


def _cmd_precision(args: argparse.Namespace) -> int:
    from softmask.eval.precision import REPORT_JSON, REPORT_MD, PrecisionOptions, precision_video

    if args.fps is not None:
        raise InputError("--fps: the search compares frames one by one; their rate plays no part")
    report = precision_video(
        args.source, [*args.annotations, *args.annotate], args.out,
        _run_settings(args, args.backend),
        PrecisionOptions(ground_truth=args.ground_truth, max_drop=args.max_jf_drop,
                         work_dir=args.work_dir),
    )
    print(report.markdown(), end="")
    out = Path(args.out)
    print(f"wrote {out / REPORT_JSON}, {out / REPORT_MD} and the {report.best} export "
          f"{report.best_export}")
    return 0


def _add_precision(sub: argparse._SubParsersAction) -> None:
    from softmask.eval.precision import DEFAULT_MAX_DROP
    from softmask.runtime.factory import backends_where

    p = sub.add_parser("precision", help="choose fp16/fp32 per module group by the task metric "
                                         "over a video (greedy from the divergence culprits)")
    _video_arguments(p)
    p.add_argument("--ground-truth", help="folder of ground-truth label PNGs (metric J&F; "
                                          "without it: label agreement with fp32)")
    p.add_argument("--out", required=True,
                   help="output folder: precision.json, precision.md, export/ (the chosen one)")
    p.add_argument("--max-jf-drop", type=_non_negative_float, default=DEFAULT_MAX_DROP,
                   help=f"largest allowed drop of the metric from fp32 (default {DEFAULT_MAX_DROP})")
    p.add_argument("--backend", choices=backends_where(lambda c: c.exports_graphs),
                   default="onnxruntime",
                   help="where the candidates run and are timed")
    p.add_argument("--work-dir", help="keep every candidate's export here (default: a temporary "
                                      "folder, removed afterwards)")
    _model_arguments(p)
    _stream_arguments(p, "object slots N (default: the largest annotated id)")
    g = p.add_argument_group("backend")
    g.add_argument("--providers", nargs="+",
                   help="ONNX Runtime execution providers, full names or tensorrt (TensorRT with the "
                        "plugin, then CUDA), cuda, cpu (default: CUDA if present, then CPU)")
    g.add_argument("--engine-cache", help="TensorRT engine cache folder")
    g.add_argument("--threads", type=_positive_int,
                   help="CPU threads of ONNX Runtime (default: its own)")
    p.set_defaults(handler=_cmd_precision)


def _cmd_synth(args: argparse.Namespace) -> int:
    from softmask.data.synthetic import write_davis_dataset

    root = write_davis_dataset(
        args.out, args.videos, args.seed, args.height, args.width, args.frames, args.subset,
        progress=lambda it: _bar(args, iterable=it, desc="videos", unit="video"),
        video_files=args.mp4,
    )
    print(f"wrote {args.videos} videos (seeds {args.seed}..{args.seed + args.videos - 1}) to "
          f"{root} (DAVIS layout, subset {args.subset!r})")
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets")
    data_sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True
    s = data_sub.add_parser("synth", help="generate synthetic VOS videos in the DAVIS layout")
    s.add_argument("--out", required=True, help="DAVIS root to write (created or extended)")
    s.add_argument("--videos", type=_positive_int, required=True, help="number of videos")
    s.add_argument("--seed", type=int, required=True, help="seed of the first video (then +1 ...)")
    s.add_argument("--height", type=_positive_int, default=240)
    s.add_argument("--width", type=_positive_int, default=432)
    s.add_argument("--frames", type=_positive_int, default=24)
    s.add_argument("--subset", default="val", help="ImageSets/2017/<subset>.txt to list them in")
    s.add_argument("--mp4", action="store_true",
                   help="also write each video as videos/<name>.mp4 (H.264, 24 fps)")
    s.set_defaults(handler=_cmd_synth)


def _cmd_eval(args: argparse.Namespace) -> int:
    from softmask.eval.davis import evaluate_davis, format_table, write_csv

    if args.model:
        from softmask.eval.davis_run import segment_davis
        from softmask.runtime.factory import resolve_model

        model = resolve_model(args.model)
        segment_davis(model, args.davis_root, args.results, args.subset,
                      progress=lambda it: _bar(args, iterable=it, desc="segmenting", unit="seq"))
    results = evaluate_davis(args.davis_root, args.results, args.subset,
                             progress=lambda it: _bar(args, iterable=it, desc="sequences",
                                                      unit="seq"))
    print(format_table(results))
    csv_path = Path(args.csv) if args.csv else Path(args.results) / "global_results-val.csv"
    main_csv, per_object = write_csv(results, csv_path)
    print(f"wrote {main_csv} and {per_object}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="DAVIS 2017 J&F of a results folder (semi-supervised)")
    p.add_argument("--davis-root", required=True, help="folder with Annotations/480p, ImageSets")
    p.add_argument("--results", required=True, help="folder with <sequence>/<frame>.png")
    p.add_argument("--subset", default="val")
    p.add_argument("--csv", help="global CSV path (default: <results>/global_results-val.csv)")
    p.add_argument("--model", help="first segment every sequence into --results with this model "
                                   "('tiny' = the bundled one, or a checkpoint path), from its "
                                   "first frame's annotation")
    p.set_defaults(handler=_cmd_eval)


def _cmd_train(args: argparse.Namespace) -> int:
    from softmask.train import TrainConfig, train

    config = TrainConfig(
        out_dir=args.out, model=args.model, supervision=args.supervision, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        height=args.height, width=args.width,
        videos=args.videos, static_fraction=args.static_fraction,
        checkpoint_every=args.checkpoint_every, seed=args.seed, threads=args.threads,
        init_from=args.init_from,
    )
    with _bar(args, total=config.steps, desc="train", unit="step") as bar:
        def progress(step: int, steps: int, record: dict) -> None:
            bar.n = step
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            bar.refresh()

        final = train(config, resume=not args.restart, progress=progress,
                      pool_progress=lambda it: _bar(args, iterable=it, desc="training videos",
                                                    unit="video", leave=False))
    print(f"wrote {final}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on synthetic videos (HODOR's cyclic "
                                     "weak supervision); resumable")
    p.add_argument("--out", required=True, help="run folder (checkpoints; resumed if present)")
    p.add_argument("--model", default="tiny", help="model preset (default tiny)")
    p.add_argument("--supervision", choices=("weak", "full"), default="weak",
                   help="weak: only the reference frame's annotation (cyclic); full: every frame")
    p.add_argument("--steps", type=_positive_int, default=2000)
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: decay to 2%% of --lr over --steps")
    p.add_argument("--height", type=_positive_int, default=128)
    p.add_argument("--width", type=_positive_int, default=224)
    p.add_argument("--videos", type=_positive_int, default=200, help="synthetic training videos")
    p.add_argument("--static-fraction", type=float, default=0.3,
                   help="share of static-image pseudo-video batches (fully supervised)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=2)
    p.add_argument("--init-from", help="start from this checkpoint's weights")
    p.add_argument("--restart", action="store_true", help="ignore an existing latest.pth")
    p.set_defaults(handler=_cmd_train)


def _serve_limit_values(args: argparse.Namespace) -> dict:
    """The repository settings of --max-streams/--idle-timeout/--instances/--scores, defaults
    filled in."""
    from softmask.serve.repository import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_STREAMS

    return {
        "max_streams": args.max_streams or DEFAULT_MAX_STREAMS,
        "idle_timeout_s": args.idle_timeout or DEFAULT_IDLE_TIMEOUT_S,
        "instances": args.instances or 1,
        "scores": args.scores,
    }


def _refuse_given(args: argparse.Namespace, flags: dict[str, str], why: str) -> None:
    """InputError naming the first of ``flags`` (dest -> flag) given on the command line."""
    for dest, flag in flags.items():
        if getattr(args, dest) not in (None, False):
            raise InputError(f"{flag}: {why}; drop {flag}")


def _cmd_serve_repo(args: argparse.Namespace) -> int:
    from softmask.serve.repository import (
        read_repository_manifest,
        variant_capabilities,
        variants_where,
        write_repository,
    )

    if not variant_capabilities(args.graphs).builds_engines:
        plans = " or ".join(variants_where(lambda c: c.builds_engines))
        _refuse_given(args, {"plugin": "--plugin", "skip_plans": "--skip-plans"},
                      f"applies to --graphs {plans}, not {args.graphs}")
    repo = write_repository(
        args.export, args.out, graphs=args.graphs, device=args.device, plugins=args.plugin,
        build_plans=not args.skip_plans, **_serve_limit_values(args),
    )
    summary = read_repository_manifest(repo)
    print(f"wrote Triton model repository {repo} ({summary['graphs']} graphs on "
          f"{summary['device']}, at most {summary['max_streams']} streams per instance)")
    if (repo / "build_plans.sh").exists():
        print(f"TensorRT plans not built here: run {repo / 'build_plans.sh'} PLUGIN.so where the "
              "server runs (inside the Triton container)")
    print("serve it with: " + shlex.join(["tritonserver", f"--model-repository={repo.resolve()}",
                                          *summary["tritonserver_args"]]))
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0..65535 (0 picks a free one), got "
                                         f"{value}")
    return value


def _finite_positive_float(text: str) -> float:
    value = _positive_float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def _serve_limits(p: argparse.ArgumentParser) -> None:
    from softmask.serve.repository import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_STREAMS

    g = p.add_argument_group("streams")
    g.add_argument("--max-streams", type=_positive_int,
                   help=f"most concurrent streams per instance (default {DEFAULT_MAX_STREAMS})")
    g.add_argument("--idle-timeout", type=_finite_positive_float,
                   help="seconds without a frame after which a stream is reaped (default "
                        f"{DEFAULT_IDLE_TIMEOUT_S:g})")
    g.add_argument("--instances", type=_positive_int,
                   help="softmask_stream instances (a stream stays on one; default 1)")
    g.add_argument("--scores", action="store_true",
                   help="also answer float32 object scores (output SCORES)")


# serve start's flags that write a repository: with --repo (written already) they are refused.
_REPOSITORY_FLAGS = {
    "export": "--export", "checkpoint": "--checkpoint", "height": "--height", "width": "--width",
    "objects": "--objects", "window": "--window", "min_dim": "--min-dim", "max_dim": "--max-dim",
    "graphs": "--graphs", "max_streams": "--max-streams", "idle_timeout": "--idle-timeout",
    "instances": "--instances", "scores": "--scores",
}


def _cmd_serve_start(args: argparse.Namespace) -> int:
    import shutil
    import signal

    from softmask.errors import BackendUnavailable
    from softmask.serve.repository import PYTHON_ONLY_VARIANTS, read_repository_manifest
    from softmask.serve.server import (
        REPOSITORY_DIR,
        AccessKeys,
        EmbeddedServer,
        Endpoints,
        check_embedded_model,
        check_host,
        embedded_repository,
    )

    check_host(args.host, args.allow_remote)

    model = {
        "export_dir": args.export, "checkpoint": args.checkpoint, "height": args.height,
        "width": args.width, "num_objects": args.objects, "temporal_window": args.window,
        "min_dim": args.min_dim, "max_dim": args.max_dim,
    }
    if args.repo:
        _refuse_given(args, _REPOSITORY_FLAGS, f"--repo {args.repo} is written already, with "
                      "its own model and limits (softmask serve repo sets them)")
        graphs = read_repository_manifest(args.repo)["graphs"]
        if graphs not in PYTHON_ONLY_VARIANTS:
            raise InputError(
                f"--repo {args.repo} runs its graphs on Triton's {graphs} backend, which the "
                "embedded server lacks (python backend only); serve it with the Triton container "
                "(docs/serving.md)"
            )
    else:
        check_embedded_model(**model)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="softmask-serve-"))
    server = None
    try:
        server = EmbeddedServer(
            Path(args.repo) if args.repo else work / REPOSITORY_DIR,
            Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port), work,
            keys=AccessKeys.generate(remote=args.allow_remote),
        )
        server.check_startable()  # a port in use or a missing server is said before any export
        # SIGINT stops the server also when started from a script in the background (which
        # ignores it); SIGTERM does since main().
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not args.repo:
            embedded_repository(work, **model, graphs=args.graphs or "in-process",
                                **_serve_limit_values(args))
        print(f"starting tritonserver on {server.repo} (log: {server.log_path}) ...", flush=True)
        server.start(timeout_s=args.start_timeout)
        e = server.endpoints
        print(f"ready: gRPC {e.grpc_url}  HTTP {e.http_url}  metrics {e.metrics_url}", flush=True)
        print(f"admin APIs (logging, trace, repository, ...) need the key in "
              f"{work / 'admin.key'}", flush=True)
        if server.keys.token is not None:
            print(f"remote clients allowed: streams need --token {server.keys.token}", flush=True)
        print("stream to it with: softmask stream SOURCE --annotations FIRST.png --out OUT "
              f"--url {e.grpc_url}; Ctrl-C stops the server", flush=True)
        code = server.wait()
        raise BackendUnavailable(
            f"tritonserver exited with code {code} while serving; the end of "
            f"{server.log_path}:\n{server.log_tail()}"
        )
    except KeyboardInterrupt as stop:
        code = server.stop() if server is not None else None
        note = "" if not code else "; streams still open were dropped, see the log"
        print(f"stopped (tritonserver exit code {code}{note})", flush=True)
        return exit_code(stop)
    finally:
        if server is not None:
            server.stop()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime.settings import DEFAULT_WINDOW
    from softmask.serve.repository import GRAPH_VARIANTS, PYTHON_ONLY_VARIANTS
    from softmask.serve.server import START_TIMEOUT_S

    p = sub.add_parser("serve", help="serve many video streams on Triton Inference Server")
    serve_sub = p.add_subparsers(dest="serve_command", metavar="SERVE_COMMAND")
    serve_sub.required = True

    r = serve_sub.add_parser("repo", help="write a Triton model repository for an export")
    r.add_argument("--export", required=True, help="streaming export folder (softmask export)")
    r.add_argument("--out", required=True, help="repository folder to write")
    r.add_argument("--graphs", choices=GRAPH_VARIANTS, default="in-process",
                   help="where the per-frame graphs run (default in-process; see docs/serving.md)")
    r.add_argument("--device", choices=("cpu", "gpu"),
                   help="device of the graphs (default gpu for onnxruntime/tensorrt, else cpu)")
    r.add_argument("--plugin", action="append",
                   help="tensorrt: plugin library path on the server (repeatable)")
    r.add_argument("--skip-plans", action="store_true",
                   help="tensorrt: do not build plans here; write build_plans.sh (trtexec)")
    _serve_limits(r)
    r.set_defaults(handler=_cmd_serve_repo)

    s = serve_sub.add_parser("start", help="run the embedded Triton server (python backend, "
                                           "nvidia-pytriton's tritonserver) in the foreground")
    model = s.add_argument_group("model (one of)")
    model.add_argument("--export", help="streaming export folder to serve")
    model.add_argument("--repo", help="a repository written by softmask serve repo "
                                      f"({'/'.join(PYTHON_ONLY_VARIANTS)} graphs)")
    model.add_argument("--checkpoint", help="export this checkpoint first (default: the bundled "
                                            "model; needs --height, --width, --objects)")
    model.add_argument("--height", type=_positive_int, help="frame height to export for")
    model.add_argument("--width", type=_positive_int, help="frame width to export for")
    model.add_argument("--objects", type=_positive_int, help="object slots to export for")
    model.add_argument("--window", type=_positive_int,
                       help=f"temporal window (default {DEFAULT_WINDOW})")
    model.add_argument("--min-dim", type=_positive_int, help="resize the short side to this")
    model.add_argument("--max-dim", type=_positive_int, help="cap the long side at this")
    model.add_argument("--graphs", choices=PYTHON_ONLY_VARIANTS,
                       help="in-process (default) or python (per-graph models called by BLS)")
    net = s.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only)")
    net.add_argument("--allow-remote", action="store_true",
                     help="allow a --host reachable from other machines; streams then need the "
                          "token printed at start")
    net.add_argument("--http-port", type=_port, default=8000, help="0 picks a free port")
    net.add_argument("--grpc-port", type=_port, default=8001, help="0 picks a free port")
    net.add_argument("--metrics-port", type=_port, default=8002, help="0 picks a free port")
    s.add_argument("--work-dir", help="keep the repository and server log here (default: a "
                                      "temporary folder, removed at exit)")
    s.add_argument("--start-timeout", type=_finite_positive_float, default=START_TIMEOUT_S,
                   help=f"seconds to wait for the server to be ready (default "
                        f"{START_TIMEOUT_S:g})")
    _serve_limits(s)
    s.set_defaults(handler=_cmd_serve_start)


def _cmd_stream(args: argparse.Namespace) -> int:
    from softmask.serve.client import stream_source

    report = stream_source(
        args.source, [*args.annotations, *args.annotate], args.out, args.url,
        stream_id=args.stream_id, in_flight=args.in_flight, realtime=args.realtime,
        timeout_s=args.timeout, overlay=args.overlay, mask_video=args.mask_video,
        overwrite=args.overwrite, fps=args.fps, token=args.token,
    )
    lat = report["latency"]
    print(f"stream {report['stream_id']}: {report['frames']} frames -> "
          f"{Path(args.out)} ({report['end_to_end_fps']:.1f} frames/s)")
    if lat["count"]:
        print(f"round trip per frame: p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, "
              f"p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms (client side, "
              f"{report['in_flight']} in flight)")
    return 0


def _output_arguments(p: argparse.ArgumentParser, resume: bool) -> None:
    g = p.add_argument_group("outputs")
    g.add_argument("--overlay", action="store_true",
                   help="also write overlays: overlay.mp4 for videos, overlay/*.jpg for folders")
    g.add_argument("--mask-video", action="store_true",
                   help="write masks.mkv (lossless FFV1 label video) instead of mask PNGs")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run's outputs in --out")
    if resume:
        g.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out: masks that exist are kept; "
                            "the model re-runs the frames before them to rebuild its state")


def _add_stream(sub: argparse._SubParsersAction) -> None:
    from softmask.serve.client import DEFAULT_IN_FLIGHT, DEFAULT_TIMEOUT_S

    p = sub.add_parser("stream", help="segment a video on a softmask Triton server (gRPC)")
    _video_arguments(p)
    p.add_argument("--out", required=True, help="output folder (masks/, overlay, report.json)")
    p.add_argument("--url", default="grpc://127.0.0.1:8001", help="server gRPC endpoint")
    p.add_argument("--stream-id", help="the stream's id (default: random); routers pin on it")
    p.add_argument("--token", default=os.environ.get("SOFTMASK_TOKEN"),
                   help="the token a server started with --allow-remote printed (default: "
                        "$SOFTMASK_TOKEN)")
    p.add_argument("--in-flight", type=_positive_int, default=DEFAULT_IN_FLIGHT,
                   help=f"frames sent ahead of their answers (default {DEFAULT_IN_FLIGHT})")
    p.add_argument("--realtime", action="store_true", help="send at the source's frame rate")
    p.add_argument("--timeout", type=_finite_positive_float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT_S:g})")
    _output_arguments(p, resume=False)
    p.set_defaults(handler=_cmd_stream)


def _cmd_cache(args: argparse.Namespace) -> int:
    from softmask.runtime.cache_admin import cache_entries, cache_folders, parse_size, prune

    folders = cache_folders(args.cache_dir, args.engine_cache)
    where = " and ".join(str(f) for f in folders.values())
    if args.cache_command == "prune":
        removed = prune(parse_size(args.max_size), folders)
        freed = sum(e.size for e in removed)
        print(f"removed {len(removed)} entries ({freed / 2**20:.1f} MiB)")
    entries = cache_entries(folders)
    if args.cache_command == "list":
        for entry in entries:
            print(f"{entry.cache}/{entry.name}  {entry.size / 2**20:.1f} MiB  last used "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.last_used))}")
    print(f"{len(entries)} entries, {sum(e.size for e in entries) / 2**20:.1f} MiB in {where}")
    return 0


def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list or prune softmask's caches (exports, TensorRT engines)")
    cache_sub = p.add_subparsers(dest="cache_command", metavar="CACHE_COMMAND")
    cache_sub.required = True
    for name, text in (("list", "every entry, least recently used first"),
                       ("prune", "delete least recently used entries down to --max-size")):
        c = cache_sub.add_parser(name, help=text)
        c.add_argument("--cache-dir", help="export cache folder (as softmask run takes it; "
                                           "default $SOFTMASK_CACHE/exports or "
                                           "~/.cache/softmask/exports)")
        c.add_argument("--engine-cache", help="TensorRT engine cache folder (as softmask run "
                                              "takes it; default $SOFTMASK_CACHE/engines or "
                                              "~/.cache/softmask/engines)")
        if name == "prune":
            c.add_argument("--max-size", required=True,
                           help="size to keep, e.g. 2G, 500M or bytes")
        c.set_defaults(handler=_cmd_cache)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="softmask",
        description="Deploy soft-masked attention models (HODOR first) to ONNX Runtime and "
                    "TensorRT, with parity checks.",
    )
    parser.add_argument("--version", action="version", version=f"softmask {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output: -v softmask's steps, -vv also the libraries' "
                             "debug output")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_demo, _add_export, _add_run, _add_bench, _add_stream, _add_serve,
                _add_parity, _add_parity_image, _add_precision, _add_data, _add_eval,
                _add_train, _add_cache):
        add(sub)
    return parser


def configure_logging(verbose: int) -> None:
    """softmask's loggers at WARNING / INFO (-v) / DEBUG (-vv); other libraries' at WARNING
    unless -vv, and the exporter's routine chatter at ERROR unless -vv."""
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    redact_logging()
    logger.setLevel((logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    if verbose < 2:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        # torch is imported later, on first use, and then sets its registered loggers' levels
        # itself from TORCH_LOGS ("-onnx": torch.onnx at ERROR), undoing the line above.
        os.environ.setdefault("TORCH_LOGS", "-onnx")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    handler: Handler = args.handler
    try:
        if args.command in _TORCH_COMMANDS:
            require_torch(_TORCH_COMMANDS[args.command])
        with terminate_as_interrupt():
            return handler(args)
    except SoftmaskError as exc:
        print(f"softmask {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # Disk full, permissions changed mid-run, ...: the file and the reason, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(redact(f"softmask {args.command}: error: {where}{exc.strerror or exc}"),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"softmask {args.command}: {interrupt_reason(exc)}", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
