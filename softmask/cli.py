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
    from softmask.eval.parity import parity_video

    work = args.work_dir or tempfile.mkdtemp(prefix="softmask-parity-")
    report = parity_video(
        args.video, args.annotations, reference=args.reference, candidate=args.candidate,
        checkpoint=args.checkpoint, export_dir=args.export_dir, ground_truth_dir=args.ground_truth,
        num_objects=args.objects, temporal_window=args.window, providers=args.providers,
        engine_cache_dir=args.engine_cache, work_dir=work,
        min_agreement=args.min_agreement, score_tolerance=args.score_tolerance,
    )
    if args.report:
        report.save(args.report)
    summary = report.to_dict()
    for key in ("min_agreement", "max_abs_score_diff", "mean_iou_reference", "mean_iou_candidate"):
        if summary.get(key) is not None:
            print(f"{key}: {summary[key]}")
    for failure in report.failures:
        print(f"FAIL: {failure}")
    print(f"parity {args.reference} vs {args.candidate}: {'PASS' if report.passed else 'FAIL'} "
          f"(label agreement >= {args.min_agreement}, score diff <= {args.score_tolerance})")
    return 0 if report.passed else 1


def _add_parity(sub: argparse._SubParsersAction) -> None:
    from softmask.eval.parity import DEFAULT_MIN_AGREEMENT, DEFAULT_SCORE_TOLERANCE
    from softmask.runtime import BACKENDS

    p = sub.add_parser("parity", help="run one video through two backends and compare them")
    _video_arguments(p)
    p.add_argument("--reference", choices=BACKENDS, default="torch")
    p.add_argument("--candidate", choices=BACKENDS, default="onnxruntime")
    p.add_argument("--ground-truth", help="folder of ground-truth label PNGs (adds IoU per backend)")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help="fraction of pixels whose labels must agree, per frame")
    p.add_argument("--score-tolerance", type=float, default=DEFAULT_SCORE_TOLERANCE,
                   help="largest allowed |score difference|")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--work-dir", help="where to export the graphs (default: a temporary folder)")
    _model_arguments(p)
    _stream_arguments(p)
    _backend_arguments(p)
    p.set_defaults(handler=_cmd_parity)


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


def _cmd_serve_repo(args: argparse.Namespace) -> int:
    from softmask.serve.repository import read_repository_manifest, write_repository

    repo = write_repository(
        args.export, args.out, graphs=args.graphs, max_streams=args.max_streams,
        idle_timeout_s=args.idle_timeout, instances=args.instances, device=args.device,
        scores=args.scores, plugins=args.plugin, build_plans=not args.skip_plans,
    )
    summary = read_repository_manifest(repo)
    print(f"wrote Triton model repository {repo} ({summary['graphs']} graphs on "
          f"{summary['device']}, at most {summary['max_streams']} streams per instance)")
    if (repo / "build_plans.sh").exists():
        print(f"TensorRT plans not built here: run {repo / 'build_plans.sh'} PLUGIN.so where the "
              "server runs (inside the Triton container)")
    print("serve it with: tritonserver --model-repository=" + str(repo.resolve()) + " "
          + " ".join(summary["tritonserver_args"]))
    return 0


def _serve_limits(p: argparse.ArgumentParser) -> None:
    from softmask.serve.repository import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_STREAMS

    g = p.add_argument_group("streams")
    g.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS,
                   help=f"most concurrent streams per instance (default {DEFAULT_MAX_STREAMS})")
    g.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S,
                   help="seconds without a frame after which a stream is reaped (default "
                        f"{DEFAULT_IDLE_TIMEOUT_S:g})")
    g.add_argument("--instances", type=int, default=1,
                   help="softmask_stream instances (a stream stays on one; default 1)")
    g.add_argument("--scores", action="store_true",
                   help="also answer float32 object scores (output SCORES)")


def _cmd_serve_start(args: argparse.Namespace) -> int:
    import shutil
    import signal

    from softmask.serve.repository import PYTHON_ONLY_VARIANTS, read_repository_manifest
    from softmask.serve.server import EmbeddedServer, Endpoints, embedded_repository

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="softmask-serve-"))
    # SIGTERM stops the server as Ctrl-C does; SIGINT too when started from a script in the
    # background (which ignores it).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = None
    try:
        if args.repo:
            repo = Path(args.repo)
            graphs = read_repository_manifest(repo)["graphs"]
            if graphs not in PYTHON_ONLY_VARIANTS:
                print(f"softmask serve: error: {repo} runs its graphs on Triton's {graphs} "
                      "backend, which the embedded server lacks (python backend only); serve it "
                      "with the Triton container (docs/serving.md)", file=sys.stderr)
                return 2
        else:
            repo = embedded_repository(
                work, export_dir=args.export, checkpoint=args.checkpoint, height=args.height,
                width=args.width, num_objects=args.objects, temporal_window=args.window,
                min_dim=args.min_dim, max_dim=args.max_dim, graphs=args.graphs,
                max_streams=args.max_streams, idle_timeout_s=args.idle_timeout,
                instances=args.instances, scores=args.scores,
            )
        server = EmbeddedServer(
            repo, Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port), work
        )
        print(f"starting tritonserver on {repo} (log: {server.log_path}) ...", flush=True)
        server.start(timeout_s=args.start_timeout)
        e = server.endpoints
        print(f"ready: gRPC {e.grpc_url}  HTTP {e.http_url}  metrics {e.metrics_url}", flush=True)
        print("stream to it with: softmask stream SOURCE --annotations FIRST.png --out OUT "
              f"--url {e.grpc_url}; Ctrl-C stops the server", flush=True)
        code = server.wait()
        print(f"softmask serve: error: tritonserver exited with code {code}; the end of "
              f"{server.log_path}:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        code = server.stop() if server is not None else None
        note = "" if not code else "; streams still open were dropped, see the log"
        print(f"stopped (tritonserver exit code {code}{note})", flush=True)
        return 0
    finally:
        if server is not None:
            server.stop()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from softmask.serve.repository import GRAPH_VARIANTS, PYTHON_ONLY_VARIANTS

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
    model.add_argument("--height", type=int, help="frame height to export for")
    model.add_argument("--width", type=int, help="frame width to export for")
    model.add_argument("--objects", type=int, help="object slots to export for")
    model.add_argument("--window", type=int, default=7, help="temporal window (default 7)")
    model.add_argument("--min-dim", type=int, help="resize the short side to this")
    model.add_argument("--max-dim", type=int, help="cap the long side at this")
    model.add_argument("--graphs", choices=PYTHON_ONLY_VARIANTS, default="in-process",
                       help="in-process (default) or python (per-graph models called by BLS)")
    net = s.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only)")
    net.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    net.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port")
    net.add_argument("--metrics-port", type=int, default=8002, help="0 picks a free port")
    s.add_argument("--work-dir", help="keep the repository and server log here (default: a "
                                      "temporary folder, removed at exit)")
    s.add_argument("--start-timeout", type=float, default=120.0,
                   help="seconds to wait for the server to be ready")
    _serve_limits(s)
    s.set_defaults(handler=_cmd_serve_start)


def _cmd_stream(args: argparse.Namespace) -> int:
    from softmask.serve.client import stream_source

    report = stream_source(
        args.source, args.annotations, args.out, args.url, stream_id=args.stream_id,
        in_flight=args.in_flight, realtime=args.realtime, timeout_s=args.timeout,
    )
    lat = report["latency"]
    print(f"stream {report['stream_id']}: {report['frames']} frames -> "
          f"{Path(args.out) / 'masks'} ({report['end_to_end_fps']:.1f} frames/s)")
    if lat["count"]:
        print(f"round trip per frame: p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, "
              f"p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms (client side, "
              f"{report['in_flight']} in flight)")
    return 0


def _add_stream(sub: argparse._SubParsersAction) -> None:
    from softmask.serve.client import DEFAULT_IN_FLIGHT, DEFAULT_TIMEOUT_S

    p = sub.add_parser("stream", help="segment a video on a softmask Triton server (gRPC)")
    p.add_argument("source", help="folder of frames, video file, URL or camera (as softmask run)")
    p.add_argument("--annotations", action="append", required=True,
                   help="first.png (frame 0), INDEX:PATH, or a folder; repeatable")
    p.add_argument("--out", required=True, help="output folder (masks/, report.json)")
    p.add_argument("--url", default="grpc://127.0.0.1:8001", help="server gRPC endpoint")
    p.add_argument("--stream-id", help="the stream's id (default: random); routers pin on it")
    p.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT,
                   help=f"frames sent ahead of their answers (default {DEFAULT_IN_FLIGHT})")
    p.add_argument("--realtime", action="store_true", help="send at the source's frame rate")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT_S:g})")
    p.set_defaults(handler=_cmd_stream)


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
    for add in (_add_demo, _add_export, _add_run, _add_parity, _add_data, _add_eval, _add_train,
                _add_serve, _add_stream):
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
