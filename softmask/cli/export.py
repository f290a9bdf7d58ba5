"""``softmask export``: a model's per-frame streaming graphs (HODOR), or a transformers
Mask2Former (``--hf-model``)."""

from __future__ import annotations

import argparse

from softmask.cli.args import ModelArgs, StreamArgs, refuse_given
from softmask.cli.common import ExportProgress, positive_int
from softmask.errors import InputError

_MODEL = ModelArgs()
_STREAM = StreamArgs("object slots N: object ids 1..N may appear (required for HODOR)")


def _cmd_export_hf(args: argparse.Namespace) -> int:
    from softmask.convert.mask2former import export_mask2former, load_hf_model

    refuse_given(args, {**ModelArgs.FLAGS, **StreamArgs.FLAGS, "fp16": "--fp16"},
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
    progress = ExportProgress(args)
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


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the per-frame streaming graphs (ONNX) of a model")
    _MODEL.add(p)
    p.add_argument("--height", type=positive_int, required=True, help="frame height in pixels")
    p.add_argument("--width", type=positive_int, required=True, help="frame width in pixels")
    p.add_argument("--out", required=True,
                   help="output folder (new or empty; written completely or not at all)")
    p.add_argument("--fp16", action="store_true", help="float16 graphs (meant for GPUs)")
    p.add_argument("--attention", choices=("plugin", "function", "onnx-attention"),
                   default="plugin",
                   help="how the soft-masked attention is written: plugin (the TensorRT plugin's "
                        "node with a standard-op body; default), function (the body's plain ops), "
                        "onnx-attention (ONNX's Attention op, opset 23)")
    _STREAM.add(p)
    p.add_argument("--hf-model", metavar="DIR",
                   help="a transformers save_pretrained folder of "
                        "Mask2FormerForUniversalSegmentation to export instead (model.onnx, "
                        "hard-masked attention as the op; needs softmask[hf])")
    p.set_defaults(handler=_cmd_export, torch_for="exporting a model")
