"""``softmask parity``, ``parity-image`` and ``precision``: does a deployed model still segment
like the original, and which precision may each part run in."""

from __future__ import annotations

import argparse
from pathlib import Path

from softmask.cli.args import BackendArgs, ModelArgs, StreamArgs, VideoArgs
from softmask.cli.common import ExportProgress, non_negative_float
from softmask.errors import InputError

_OBJECTS_HELP = "object slots N (default: the largest annotated id)"
_VIDEO = VideoArgs()
_MODEL = ModelArgs()
_STREAM = StreamArgs(_OBJECTS_HELP)
_PARITY_BACKEND = BackendArgs(
    fp16_help="export the candidate in float16 (loosens the default tolerances)")
# The search makes its own exports (fp16 and fp32 per module group): no --export-dir, --fp16 or
# --cache-dir; its candidates run on exported graphs only.
_PRECISION_BACKEND = BackendArgs(
    exports=False, threads_help="CPU threads of ONNX Runtime (default: its own)")


def _cmd_parity(args: argparse.Namespace) -> int:
    from softmask.eval.divergence import Tolerances
    from softmask.eval.parity import ParityOptions, parity_video

    overrides = {"min_agreement": args.min_agreement, "score": args.score_tolerance,
                 "state": args.state_tolerance, "module": args.module_tolerance}
    _VIDEO.refuse_fps(args, "parity")
    if args.no_localize and args.module_tolerance is not None:
        raise InputError("--module-tolerance applies to localisation, which --no-localize skips")
    if args.plot:
        import matplotlib  # noqa: F401  (fail before the long work when it is missing)
    export_progress = ExportProgress(args)
    try:
        report = parity_video(
            args.source, _VIDEO.annotations(args),
            _PARITY_BACKEND.settings(args, args.candidate),
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
    print(report.summary(saved=bool(args.report)))
    return 0 if report.passed else 1


def add_parity(sub: argparse._SubParsersAction) -> None:
    from softmask.runtime import BACKENDS

    p = sub.add_parser("parity", help="run one video through two backends and compare them over "
                                      "time; localise the first divergence")
    _VIDEO.add(p)
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
    _MODEL.add(p)
    _STREAM.add(p)
    _PARITY_BACKEND.add(p)
    p.set_defaults(handler=_cmd_parity)


def _cmd_parity_image(args: argparse.Namespace) -> int:
    from softmask.eval.image_parity import image_parity

    report = image_parity(args.images, args.hf_model, args.export, args.tolerance)
    if args.report:
        report.save(args.report)
    print(report.summary())
    return 0 if report.passed else 1


def add_parity_image(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(handler=_cmd_parity_image,
                   torch_for="comparing an export with the transformers model")


def _cmd_precision(args: argparse.Namespace) -> int:
    from softmask.eval.precision import REPORT_JSON, REPORT_MD, PrecisionOptions, precision_video

    _VIDEO.refuse_fps(args, "the search")
    report = precision_video(
        args.source, _VIDEO.annotations(args), args.out,
        _PRECISION_BACKEND.settings(args, args.backend),
        PrecisionOptions(ground_truth=args.ground_truth, max_drop=args.max_jf_drop,
                         work_dir=args.work_dir),
    )
    print(report.markdown(), end="")
    out = Path(args.out)
    print(f"wrote {out / REPORT_JSON}, {out / REPORT_MD} and the {report.best} export "
          f"{report.best_export}")
    return 0


def add_precision(sub: argparse._SubParsersAction) -> None:
    from softmask.eval.precision import DEFAULT_MAX_DROP
    from softmask.runtime.factory import backends_where

    p = sub.add_parser("precision", help="choose fp16/fp32 per module group by the task metric "
                                         "over a video (greedy from the divergence culprits)")
    _VIDEO.add(p)
    p.add_argument("--ground-truth", help="folder of ground-truth label PNGs (metric J&F; "
                                          "without it: label agreement with fp32)")
    p.add_argument("--out", required=True,
                   help="output folder: precision.json, precision.md, export/ (the chosen one)")
    p.add_argument("--max-jf-drop", type=non_negative_float, default=DEFAULT_MAX_DROP,
                   help=f"largest allowed drop of the metric from fp32 (default {DEFAULT_MAX_DROP})")
    p.add_argument("--backend", choices=backends_where(lambda c: c.exports_graphs),
                   default="onnxruntime",
                   help="where the candidates run and are timed")
    p.add_argument("--work-dir", help="keep every candidate's export here (default: a temporary "
                                      "folder, removed afterwards)")
    _MODEL.add(p)
    _STREAM.add(p)
    _PRECISION_BACKEND.add(p)
    p.set_defaults(handler=_cmd_precision,
                   torch_for="the precision search (exports each candidate)")
