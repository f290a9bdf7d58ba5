"""``softmask`` command line: one entry point, one subcommand per job.

Library modules log; this module decides what the user sees. A SoftmaskError becomes one line on
stderr and its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from softmask import __version__
from softmask.errors import SoftmaskError

logger = logging.getLogger("softmask")

Handler = Callable[[argparse.Namespace], int]


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
        lat, s = r.report["latency"], r.scores
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


def _stream_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stream settings")
    g.add_argument("--objects", type=int, help="object slots (default: largest annotated id)")
    g.add_argument("--window", type=int, default=7, help="temporal window W in frames (default 7)")
    g.add_argument("--min-dim", type=int, help="resize the short side to this (default: keep size)")
    g.add_argument("--max-dim", type=int, help="cap the long side at this")


def _backend_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--export-dir", help="use this streaming export instead of exporting anew")
    g.add_argument("--providers", nargs="+",
                   help="ONNX Runtime execution providers (default: CUDA if present, then CPU)")
    g.add_argument("--engine-cache", help="TensorRT engine cache folder")


def _video_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="folder of frames (JPEG/PNG, sorted by name)")
    p.add_argument("--annotations", required=True,
                   help="folder of label PNGs named like the frames (any frame may carry one)")


def _cmd_export(args: argparse.Namespace) -> int:
    from softmask.export import export_streaming
    from softmask.runtime import resolve_model

    export = export_streaming(
        resolve_model(args.checkpoint), args.out, args.height, args.width, args.objects,
        temporal_window=args.window, fp16=args.fp16, min_dim=args.min_dim, max_dim=args.max_dim,
    )
    print(f"wrote {export.directory}: " + ", ".join(sorted(export.graphs)) + " + manifest.json")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the per-frame streaming graphs (ONNX) of a model")
    _model_arguments(p)
    p.add_argument("--height", type=int, required=True, help="frame height in pixels")
    p.add_argument("--width", type=int, required=True, help="frame width in pixels")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fp16", action="store_true", help="float16 graphs")
    _stream_arguments(p)
    p.set_defaults(handler=_cmd_export, objects=None)


def _print_latency(report: dict) -> None:
    lat = report["latency"]
    if lat["count"]:
        print(f"per-frame step latency over {lat['count']} frames: p50 {lat['p50_ms']:.1f} ms, "
              f"p90 {lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms "
              f"({lat['fps']:.1f} fps of step time)")


def _cmd_run(args: argparse.Namespace) -> int:
    from softmask.runtime import run_video

    report = run_video(
        args.video, args.annotations, args.out, backend=args.backend, checkpoint=args.checkpoint,
        export_dir=args.export_dir, num_objects=args.objects, temporal_window=args.window,
        min_dim=args.min_dim, max_dim=args.max_dim, fp16=args.fp16, overlay=args.overlay,
        providers=args.providers, engine_cache_dir=args.engine_cache,
    )
    print(f"{report['backend']} ({report['device']}, {report['precision']}): {report['frames']} "
          f"frames -> {Path(args.out) / 'masks'}")
    _print_latency(report)
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime import BACKENDS

    p = sub.add_parser("run", help="segment a video: label PNGs per frame + latency report")
    _video_arguments(p)
    p.add_argument("--out", required=True, help="output folder (masks/, report.json)")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    p.add_argument("--fp16", action="store_true", help="float16 graphs (exported backends)")
    p.add_argument("--overlay", action="store_true", help="also write overlay JPEGs")
    _model_arguments(p)
    _stream_arguments(p)
    _backend_arguments(p)
    p.set_defaults(handler=_cmd_run)


def _cmd_parity(args: argparse.Namespace) -> int:
    from softmask.errors import InputError
    from softmask.eval.divergence import Tolerances, describe
    from softmask.eval.parity import parity_video

    overrides = {"min_agreement": args.min_agreement, "score": args.score_tolerance,
                 "state": args.state_tolerance, "module": args.module_tolerance}
    if args.no_localize and args.module_tolerance is not None:
        raise InputError("--module-tolerance applies to localisation, which --no-localize skips")
    if args.plot:
        import matplotlib  # noqa: F401  (fail before the long work when it is missing)
    report = parity_video(
        args.video, args.annotations, reference=args.reference, candidate=args.candidate,
        checkpoint=args.checkpoint, export_dir=args.export_dir, ground_truth_dir=args.ground_truth,
        num_objects=args.objects, temporal_window=args.window, providers=args.providers,
        engine_cache_dir=args.engine_cache, work_dir=args.work_dir, fp16=args.fp16,
        min_dim=args.min_dim, max_dim=args.max_dim, localize_divergence=not args.no_localize,
        tolerances=None if all(v is None for v in overrides.values()) else (
            Tolerances.for_precision("fp16" if args.fp16 else "fp32").replace(**overrides)),
    )
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
    print(f"first divergence: {describe(first) if first else 'none'}")
    loc = report.localisation
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
        print(f"FAIL {where}: " + "; ".join(what))
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
    p.add_argument("--fp16", action="store_true", help="export the candidate in float16 (loosens "
                                                       "the default tolerances)")
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
    p.add_argument("--work-dir", help="keep the exported graphs here (default: a temporary folder, "
                                      "removed afterwards)")
    _model_arguments(p)
    g = p.add_argument_group("stream settings")
    g.add_argument("--objects", type=int, help="object slots (default: largest annotated id)")
    g.add_argument("--window", type=int, help="temporal window W in frames (default 7)")
    g.add_argument("--min-dim", type=int, help="resize the short side to this (default: keep size)")
    g.add_argument("--max-dim", type=int, help="cap the long side at this")
    _backend_arguments(p)
    p.set_defaults(handler=_cmd_parity)


def _cmd_precision(args: argparse.Namespace) -> int:
    from softmask.eval.precision import REPORT_JSON, REPORT_MD, precision_video

    report = precision_video(
        args.video, args.annotations, args.out, ground_truth_dir=args.ground_truth,
        checkpoint=args.checkpoint, backend=args.backend, providers=args.providers,
        engine_cache_dir=args.engine_cache, num_objects=args.objects,
        temporal_window=args.window, min_dim=args.min_dim, max_dim=args.max_dim,
        max_drop=args.max_jf_drop, work_dir=args.work_dir,
    )
    print(report.markdown(), end="")
    out = Path(args.out)
    print(f"wrote {out / REPORT_JSON}, {out / REPORT_MD} and the {report.best} export "
          f"{report.best_export}")
    return 0


def _add_precision(sub: argparse._SubParsersAction) -> None:
    from softmask.eval.precision import DEFAULT_MAX_DROP

    p = sub.add_parser("precision", help="choose fp16/fp32 per module group by the task metric "
                                         "over a video (greedy from the divergence culprits)")
    _video_arguments(p)
    p.add_argument("--ground-truth", help="folder of ground-truth label PNGs (metric J&F; "
                                          "without it: label agreement with fp32)")
    p.add_argument("--out", required=True,
                   help="output folder: precision.json, precision.md, export/ (the chosen one)")
    p.add_argument("--max-jf-drop", type=float, default=DEFAULT_MAX_DROP,
                   help=f"largest allowed drop of the metric from fp32 (default {DEFAULT_MAX_DROP})")
    p.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                   help="where the candidates run and are timed")
    p.add_argument("--work-dir", help="keep every candidate's export here (default: a temporary "
                                      "folder, removed afterwards)")
    _model_arguments(p)
    _stream_arguments(p)
    g = p.add_argument_group("backend")
    g.add_argument("--providers", nargs="+",
                   help="ONNX Runtime execution providers (default: CUDA if present, then CPU)")
    g.add_argument("--engine-cache", help="TensorRT engine cache folder")
    p.set_defaults(handler=_cmd_precision)


def _cmd_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from softmask.data.synthetic import write_davis_dataset

    root = write_davis_dataset(
        args.out, args.videos, args.seed, args.height, args.width, args.frames, args.subset,
        progress=lambda it: tqdm(it, desc="videos", unit="video"),
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
    s.add_argument("--videos", type=int, required=True, help="number of videos")
    s.add_argument("--seed", type=int, required=True, help="seed of the first video (then +1 ...)")
    s.add_argument("--height", type=int, default=240)
    s.add_argument("--width", type=int, default=432)
    s.add_argument("--frames", type=int, default=24)
    s.add_argument("--subset", default="val", help="ImageSets/2017/<subset>.txt to list them in")
    s.set_defaults(handler=_cmd_synth)


def _cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from softmask.eval.davis import evaluate_davis, format_table, write_csv

    if args.model:
        from softmask.runtime.factory import resolve_model
        from softmask.train.evaluate import segment_davis

        model = resolve_model(args.model)
        segment_davis(model, args.davis_root, args.results, args.subset,
                      progress=lambda it: tqdm(it, desc="segmenting", unit="seq"))
    results = evaluate_davis(args.davis_root, args.results, args.subset,
                             progress=lambda it: tqdm(it, desc="sequences", unit="seq"))
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
    from tqdm import tqdm

    from softmask.train import TrainConfig, train

    config = TrainConfig(
        out_dir=args.out, model=args.model, supervision=args.supervision, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        height=args.height, width=args.width,
        videos=args.videos, static_fraction=args.static_fraction,
        checkpoint_every=args.checkpoint_every, seed=args.seed, threads=args.threads,
        init_from=args.init_from,
    )
    with tqdm(total=config.steps, desc="train", unit="step") as bar:
        def progress(step: int, steps: int, record: dict) -> None:
            bar.n = step
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            bar.refresh()

        final = train(config, resume=not args.restart, progress=progress,
                      pool_progress=lambda it: tqdm(it, desc="training videos", unit="video",
                                                    leave=False))
    print(f"wrote {final}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on synthetic videos (HODOR's cyclic "
                                     "weak supervision); resumable")
    p.add_argument("--out", required=True, help="run folder (checkpoints; resumed if present)")
    p.add_argument("--model", default="tiny", help="model preset (default tiny)")
    p.add_argument("--supervision", choices=("weak", "full"), default="weak",
                   help="weak: only the reference frame's annotation (cyclic); full: every frame")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: decay to 2%% of --lr over --steps")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=224)
    p.add_argument("--videos", type=int, default=200, help="synthetic training videos")
    p.add_argument("--static-fraction", type=float, default=0.3,
                   help="share of static-image pseudo-video batches (fully supervised)")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init-from", help="start from this checkpoint's weights")
    p.add_argument("--restart", action="store_true", help="ignore an existing latest.pth")
    p.set_defaults(handler=_cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmask",
        description="Deploy soft-masked attention models (HODOR first) to ONNX Runtime and "
                    "TensorRT, with parity checks.",
    )
    parser.add_argument("--version", action="version", version=f"softmask {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_demo, _add_export, _add_run, _add_parity, _add_precision, _add_data,
                _add_eval, _add_train):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        # The exporter warns about optional packages (torchvision) and skipped constant folding
        # on every export: noise for a user.
        for name in ("torch.onnx", "onnxscript"):
            logging.getLogger(name).setLevel(logging.ERROR)
    handler: Handler = args.handler
    try:
        return handler(args)
    except SoftmaskError as exc:
        print(f"softmask {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"softmask {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
