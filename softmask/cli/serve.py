"""``softmask serve repo``, ``serve start`` and ``stream``: serving many video streams on
Triton Inference Server, and streaming a video to it."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from softmask.cli.args import OutputArgs, ServeLimitArgs, ServeModelArgs, ServeStartArgs, VideoArgs
from softmask.cli.common import finite_positive_float, positive_int

_LIMITS = ServeLimitArgs()
_MODEL = ServeModelArgs()
_START = ServeStartArgs()
_VIDEO = VideoArgs()


def _cmd_serve_repo(args: argparse.Namespace) -> int:
    from softmask.serve.repository import (
        check_plan_flags,
        read_repository_manifest,
        write_repository,
    )

    check_plan_flags(args.graphs, plugins=bool(args.plugin), skip_plans=args.skip_plans)
    repo = write_repository(
        args.export, args.out, graphs=args.graphs, device=args.device, plugins=args.plugin,
        build_plans=not args.skip_plans, **_LIMITS.limits(args).resolved(),
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


def _cmd_serve_start(args: argparse.Namespace) -> int:
    from softmask.serve.embedded import serve_embedded
    from softmask.serve.server import EmbeddedServer
    from softmask.signals import exit_code

    def starting(server: EmbeddedServer) -> None:
        print(f"starting tritonserver on {server.repo} (log: {server.log_path}) ...", flush=True)

    def ready(server: EmbeddedServer, work: Path) -> None:
        e = server.endpoints
        print(f"ready: gRPC {e.grpc_url}  HTTP {e.http_url}  metrics {e.metrics_url}", flush=True)
        print(f"admin APIs (logging, trace, repository, ...) need the key in "
              f"{work / 'admin.key'}", flush=True)
        if server.keys.token is not None:
            print(f"remote clients allowed: streams need --token {server.keys.token}", flush=True)
        print("stream to it with: softmask stream SOURCE --annotations FIRST.png --out OUT "
              f"--url {e.grpc_url}; Ctrl-C stops the server", flush=True)

    stopped = serve_embedded(_MODEL.settings(args), _MODEL.options(args), _START.options(args),
                             on_starting=starting, on_ready=ready)
    note = "" if not stopped.server_code else "; streams still open were dropped, see the log"
    print(f"stopped (tritonserver exit code {stopped.server_code}{note})", flush=True)
    return exit_code(stopped.interrupt)


def add_serve(sub: argparse._SubParsersAction) -> None:
    from softmask.serve.repository import GRAPH_VARIANTS

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
    _LIMITS.add(r)
    r.set_defaults(handler=_cmd_serve_repo)

    s = serve_sub.add_parser("start", help="run the embedded Triton server (python backend, "
                                           "nvidia-pytriton's tritonserver) in the foreground")
    _MODEL.add(s)
    _START.add(s)
    _LIMITS.add(s)
    s.set_defaults(handler=_cmd_serve_start)


def _cmd_stream(args: argparse.Namespace) -> int:
    from softmask.serve.client import stream_source

    report = stream_source(
        args.source, _VIDEO.annotations(args), args.out, args.url,
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


def add_stream(sub: argparse._SubParsersAction) -> None:
    from softmask.serve.client import DEFAULT_IN_FLIGHT, DEFAULT_TIMEOUT_S

    p = sub.add_parser("stream", help="segment a video on a softmask Triton server (gRPC)")
    _VIDEO.add(p)
    p.add_argument("--out", required=True, help="output folder (masks/, overlay, report.json)")
    p.add_argument("--url", default="grpc://127.0.0.1:8001", help="server gRPC endpoint")
    p.add_argument("--stream-id", help="the stream's id (default: random); routers pin on it")
    p.add_argument("--token", default=os.environ.get("SOFTMASK_TOKEN"),
                   help="the token a server started with --allow-remote printed (default: "
                        "$SOFTMASK_TOKEN)")
    p.add_argument("--in-flight", type=positive_int, default=DEFAULT_IN_FLIGHT,
                   help=f"frames sent ahead of their answers (default {DEFAULT_IN_FLIGHT})")
    p.add_argument("--realtime", action="store_true", help="send at the source's frame rate")
    p.add_argument("--timeout", type=finite_positive_float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT_S:g})")
    OutputArgs(resume=False).add(p)
    p.set_defaults(handler=_cmd_stream)
