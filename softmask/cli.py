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


def _cmd_demo(args: argparse.Namespace) -> int:
    from softmask.demo import run_op_demo

    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="softmask-demo-"))
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


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="export a soft-masked attention model, run it in ONNX Runtime, "
                                    "check parity with PyTorch")
    p.add_argument("--out", help="folder for the exported ONNX (default: a new temporary folder)")
    p.set_defaults(handler=_cmd_demo)


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
    for add in (_add_demo,):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        # torch.onnx warns about optional packages (torchvision) on every export.
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
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
