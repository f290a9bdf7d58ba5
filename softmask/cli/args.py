"""Argument groups shared by the commands: each adds its flags to a parser, with the same
spelling and help everywhere, and turns the parsed flags into the typed settings the library
takes (``BackendArgs.settings`` -> ``RunSettings``, ``ServeModelArgs.options`` ->
``EmbeddedOptions``, ...). A command builds its parser from the groups it needs, in the order
its help lists them.

Library modules are imported inside the methods, so building the parser imports no PyTorch.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, ClassVar

from softmask.cli.common import finite_positive_float, port, positive_float, positive_int
from softmask.errors import InputError

if TYPE_CHECKING:
    from softmask.runtime.settings import RunSettings
    from softmask.serve.embedded import EmbeddedOptions, StartOptions
    from softmask.serve.repository import StreamLimits


def refuse_given(args: argparse.Namespace, flags: dict[str, str], why: str) -> None:
    """InputError naming the first of ``flags`` (dest -> flag) given on the command line.

    Raises:
        InputError: ``{flag}: {why}; drop {flag}``.
    """
    for dest, flag in flags.items():
        if getattr(args, dest) not in (None, False):
            raise InputError(f"{flag}: {why}; drop {flag}")


class ModelArgs:
    """--checkpoint: the model to run or export."""

    FLAGS: ClassVar[dict[str, str]] = {"checkpoint": "--checkpoint"}

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--checkpoint", help="model checkpoint (.pth, HODOR's format or "
                                                 "ours); default: the bundled tiny model")


class StreamArgs:
    """The stream settings an export fixes: --objects, --window, --min-dim, --max-dim."""

    FLAGS: ClassVar[dict[str, str]] = {"objects": "--objects", "window": "--window",
                                       "min_dim": "--min-dim", "max_dim": "--max-dim"}

    def __init__(self, objects_help: str) -> None:
        self.objects_help = objects_help

    def add(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("stream settings (fixed by an export)")
        g.add_argument("--objects", type=positive_int, help=self.objects_help)
        g.add_argument("--window", type=positive_int,
                       help="temporal window W in frames (default 7)")
        g.add_argument("--min-dim", type=positive_int,
                       help="resize the short side to this inside the graphs (default: keep size)")
        g.add_argument("--max-dim", type=positive_int, help="cap the long side at this")


class BackendArgs:
    """The "backend" group: how the model runs (--export-dir, --fp16, --providers,
    --engine-cache, --cache-dir, --threads).

    exports: the command runs an export it may make (--export-dir, --fp16, --cache-dir); False
        (precision, which makes its own exports): only --providers, --engine-cache, --threads.
    fp16_help, threads_help: the command's own wording of those flags.
    """

    def __init__(
        self,
        exports: bool = True,
        fp16_help: str = "float16 graphs (onnxruntime, tensorrt); meant for GPUs",
        threads_help: str = "CPU threads of torch / ONNX Runtime (default: their own)",
    ) -> None:
        self.exports = exports
        self.fp16_help = fp16_help
        self.threads_help = threads_help

    def add(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("backend")
        if self.exports:
            g.add_argument("--export-dir", help="run this streaming export (`softmask export`) "
                                                "instead of exporting the checkpoint")
            g.add_argument("--fp16", action="store_true", help=self.fp16_help)
        g.add_argument("--providers", nargs="+",
                       help="ONNX Runtime execution providers, full names or tensorrt (TensorRT "
                            "with the plugin, then CUDA), cuda, cpu (default: CUDA if present, "
                            "then CPU)")
        g.add_argument("--engine-cache", help="TensorRT engine cache folder")
        if self.exports:
            g.add_argument("--cache-dir", help="export cache folder (default: "
                                               "$SOFTMASK_CACHE/exports or "
                                               "~/.cache/softmask/exports)")
        g.add_argument("--threads", type=positive_int, help=self.threads_help)

    def settings(self, args: argparse.Namespace, backend: str) -> RunSettings:
        """``RunSettings`` of this group's flags with the model (``ModelArgs``) and stream
        (``StreamArgs``) flags, for ``backend``; the flags the group lacks are unset."""
        from softmask.runtime import RunSettings

        return RunSettings(
            backend=backend, checkpoint=args.checkpoint,
            export_dir=args.export_dir if self.exports else None,
            num_objects=args.objects, temporal_window=args.window, min_dim=args.min_dim,
            max_dim=args.max_dim, fp16=args.fp16 if self.exports else False,
            providers=args.providers, engine_cache_dir=args.engine_cache,
            cache_dir=args.cache_dir if self.exports else None, threads=args.threads,
        )


class VideoArgs:
    """A video and its annotations: SOURCE, --annotations, --annotate, --fps."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "source", metavar="SOURCE",
            help="folder of frames (JPEG/PNG), video file (mp4, mkv, webm, avi, ...), URL "
                 "(rtsp://, http(s)://, ...) or camera (/dev/video0, camera:0)")
        parser.add_argument(
            "--annotations", action="append", required=True, metavar="PNG|INDEX:PNG|DIR",
            help="a label PNG for frame 0, INDEX:PNG for frame INDEX, or a folder of PNGs named "
                 "like the frames (or by frame index for videos); repeatable")
        parser.add_argument("--annotate", action="append", default=[], metavar="INDEX:PNG",
                            help="one more annotated frame; repeatable")
        parser.add_argument("--fps", type=positive_float,
                            help="frame rate of a folder of frames (default 24; videos carry "
                                 "their own)")

    @staticmethod
    def annotations(args: argparse.Namespace) -> list[str]:
        """Every annotation given (--annotations, then --annotate), in order."""
        return [*args.annotations, *args.annotate]

    @staticmethod
    def refuse_fps(args: argparse.Namespace, why: str) -> None:
        """Refuse --fps for a command that compares frames one by one (``why``: who compares).

        Raises:
            InputError: ``--fps: {why} compares frames one by one; their rate plays no part``.
        """
        if args.fps is not None:
            raise InputError(f"--fps: {why} compares frames one by one; their rate plays no part")


class OutputArgs:
    """The "outputs" group: --overlay, --mask-video, --overwrite (and --resume)."""

    def __init__(self, resume: bool) -> None:
        self.resume = resume

    def add(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("outputs")
        g.add_argument("--overlay", action="store_true",
                       help="also write overlays: overlay.mp4 for videos, overlay/*.jpg for "
                            "folders")
        g.add_argument("--mask-video", action="store_true",
                       help="write masks.mkv (lossless FFV1 label video) instead of mask PNGs")
        g.add_argument("--overwrite", action="store_true",
                       help="replace an earlier run's outputs in --out")
        if self.resume:
            g.add_argument("--resume", action="store_true",
                           help="continue an interrupted run in --out: masks that exist are "
                                "kept; the model re-runs the frames before them to rebuild its "
                                "state")


class ServeLimitArgs:
    """The "streams" group of a repository: --max-streams, --idle-timeout, --instances,
    --scores."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        from softmask.serve.repository import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_STREAMS

        g = parser.add_argument_group("streams")
        g.add_argument("--max-streams", type=positive_int,
                       help=f"most concurrent streams per instance (default "
                            f"{DEFAULT_MAX_STREAMS})")
        g.add_argument("--idle-timeout", type=finite_positive_float,
                       help="seconds without a frame after which a stream is reaped (default "
                            f"{DEFAULT_IDLE_TIMEOUT_S:g})")
        g.add_argument("--instances", type=positive_int,
                       help="softmask_stream instances (a stream stays on one; default 1)")
        g.add_argument("--scores", action="store_true",
                       help="also answer float32 object scores (output SCORES)")

    @staticmethod
    def limits(args: argparse.Namespace) -> StreamLimits:
        """The limits as given (``StreamLimits.resolved`` fills in the defaults)."""
        from softmask.serve.repository import StreamLimits

        return StreamLimits(max_streams=args.max_streams, idle_timeout_s=args.idle_timeout,
                            instances=args.instances, scores=args.scores)


class ServeModelArgs:
    """serve start's "model (one of)" group: an export, a repository, or a checkpoint to export
    for a frame size."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        from softmask.runtime.settings import DEFAULT_WINDOW
        from softmask.serve.repository import PYTHON_ONLY_VARIANTS

        g = parser.add_argument_group("model (one of)")
        g.add_argument("--export", help="streaming export folder to serve")
        g.add_argument("--repo", help="a repository written by softmask serve repo "
                                      f"({'/'.join(PYTHON_ONLY_VARIANTS)} graphs)")
        g.add_argument("--checkpoint", help="export this checkpoint first (default: the bundled "
                                            "model; needs --height, --width, --objects)")
        g.add_argument("--height", type=positive_int, help="frame height to export for")
        g.add_argument("--width", type=positive_int, help="frame width to export for")
        g.add_argument("--objects", type=positive_int, help="object slots to export for")
        g.add_argument("--window", type=positive_int,
                       help=f"temporal window (default {DEFAULT_WINDOW})")
        g.add_argument("--min-dim", type=positive_int, help="resize the short side to this")
        g.add_argument("--max-dim", type=positive_int, help="cap the long side at this")
        g.add_argument("--graphs", choices=PYTHON_ONLY_VARIANTS,
                       help="in-process (default) or python (per-graph models called by BLS)")

    @staticmethod
    def settings(args: argparse.Namespace) -> RunSettings:
        """The model's ``RunSettings`` (--export is its ``export_dir``)."""
        from softmask.runtime import RunSettings

        return RunSettings(
            checkpoint=args.checkpoint, export_dir=args.export, num_objects=args.objects,
            temporal_window=args.window, min_dim=args.min_dim, max_dim=args.max_dim,
        )

    @staticmethod
    def options(args: argparse.Namespace) -> EmbeddedOptions:
        """The repository's other settings, with the ``ServeLimitArgs`` limits."""
        from softmask.serve.embedded import EmbeddedOptions

        return EmbeddedOptions(height=args.height, width=args.width, graphs=args.graphs,
                               limits=ServeLimitArgs.limits(args))


class ServeStartArgs:
    """serve start's "network" group (--host, --allow-remote, the ports) and --work-dir,
    --start-timeout."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        from softmask.serve.server import START_TIMEOUT_S

        net = parser.add_argument_group("network")
        net.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1: this machine only)")
        net.add_argument("--allow-remote", action="store_true",
                         help="allow a --host reachable from other machines; streams then need "
                              "the token printed at start")
        net.add_argument("--http-port", type=port, default=8000, help="0 picks a free port")
        net.add_argument("--grpc-port", type=port, default=8001, help="0 picks a free port")
        net.add_argument("--metrics-port", type=port, default=8002, help="0 picks a free port")
        parser.add_argument("--work-dir", help="keep the repository and server log here "
                                               "(default: a temporary folder, removed at exit)")
        parser.add_argument("--start-timeout", type=finite_positive_float,
                            default=START_TIMEOUT_S,
                            help=f"seconds to wait for the server to be ready (default "
                                 f"{START_TIMEOUT_S:g})")

    @staticmethod
    def options(args: argparse.Namespace) -> StartOptions:
        """How to run the server (``StartOptions``; --repo comes from ``ServeModelArgs``)."""
        from softmask.serve.embedded import StartOptions
        from softmask.serve.server import Endpoints

        return StartOptions(
            endpoints=Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port),
            allow_remote=args.allow_remote, repo=args.repo, work_dir=args.work_dir,
            start_timeout_s=args.start_timeout,
        )
