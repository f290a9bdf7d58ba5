"""``softmask`` command line: one entry point, one subcommand per job.

Library modules log; this package decides what the user sees. A SoftmaskError becomes one line on
stderr and its exit code; anything else is a bug and keeps its traceback.

One module per command family (``run``: run, bench, demo; ``export``; ``parity``: parity,
parity-image, precision; ``serve``: serve repo/start, stream; ``data``: data synth, eval, train;
``cache``), built from the shared argument groups of ``args``. Each command imports the library
it needs inside its handler, so building the parser imports no PyTorch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from softmask import __version__
from softmask.cli import cache, data, export, parity, run, serve
from softmask.cli.common import Handler, Parser
from softmask.errors import SoftmaskError
from softmask.optional import require_torch
from softmask.redact import redact, redact_logging
from softmask.signals import exit_code, interrupt_reason, terminate_as_interrupt

logger = logging.getLogger("softmask")

# Exporter loggers that report routine steps (constant folding, deduplication, optional
# packages) as INFO/WARNING on every export: silenced below -vv.
_NOISY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")
# The commands in --help order. Those that always run the model in PyTorch (the `torch` extra)
# set ``torch_for`` (what needs it); the others run exports, and their options that need torch
# (a checkpoint to export, --backend torch) say so themselves.
_COMMANDS = (run.add_demo, export.add_export, run.add_run, run.add_bench, serve.add_stream,
             serve.add_serve, parity.add_parity, parity.add_parity_image, parity.add_precision,
             data.add_data, data.add_eval, data.add_train, cache.add_cache)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    for add in _COMMANDS:
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
        torch_for = getattr(args, "torch_for", None)
        if torch_for is not None:
            require_torch(torch_for)
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
