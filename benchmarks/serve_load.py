"""Load on a running softmask server: N concurrent streams of synthetic video over gRPC.

    python benchmarks/serve_load.py --url grpc://127.0.0.1:8001 [--streams 8] [--frames 48]
        [--in-flight 2] [--out benchmarks/results]

Each stream (one thread, one gRPC stream, its own correlation id) sends a synthetic video
(``softmask.data.synthetic.generate_video`` at the server's frame size, objects annotated on frame
0) with up to ``--in-flight`` frames ahead of their answers. Reports aggregate frames/s (all
answered frames / wall time from the first send to the last answer), per-request round-trip
p50/p90/p99 (client side, all streams), per-stream frames/s, and checks that every frame of every
stream was answered exactly once and in order (the server's FRAME_INDEX and the request id of each
answer against the frame sent; no answer left over). Writes
``<out>/serve_load_<streams>x<frames>_inflight<n>_<host>_<date-time>.{json,md}``; exits 1 if the check fails.
Start the server first, e.g. ``softmask serve start --export EXPORT --max-streams 8``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import threading
import time
from collections import deque
from pathlib import Path

from results_io import write_results

from softmask.data.synthetic import generate_video
from softmask.runtime.latency import latency_summary
from softmask.runtime.report import machine_info
from softmask.serve.client import ServerStream

logger = logging.getLogger("serve_load")


def _run_stream(index: int, args: argparse.Namespace, barrier: threading.Barrier,
                result: dict) -> None:
    """One stream: open, wait for the others, send every frame, take every answer."""
    stream = ServerStream(args.url, stream_id=f"load-{os.getpid()}-{index}", timeout_s=args.timeout)
    latencies: list[float] = []
    try:
        stream.open()
        height, width = stream.frame_shape
        video = generate_video(1000 + index, height, width, args.frames,
                               max_objects=min(5, stream.num_objects))
        annotation = video.labels[0]
        barrier.wait(timeout=args.timeout)
        pending: deque[float] = deque()
        started = time.perf_counter()

        def collect(keep: int) -> None:
            while len(pending) > keep:
                arrived, _ = stream.receive(len(latencies))
                latencies.append(arrived - pending.popleft())

        for t, frame in enumerate(video.frames):
            collect(args.in_flight - 1)
            pending.append(time.perf_counter())
            stream.send(frame, annotation if t == 0 else None, first=t == 0,
                        last=t == args.frames - 1)
        collect(0)
        finished = time.perf_counter()
        time.sleep(0.2)  # an answer sent twice would arrive by now
        result.update(answered=len(latencies), extra_answers=stream.unanswered(),
                      frame_size=[height, width],
                      started=started, finished=finished, latencies=latencies)
    except Exception as error:  # noqa: BLE001 - reported per stream, the others go on
        result.update(answered=len(latencies), error=f"{type(error).__name__}: {error}",
                      latencies=latencies)
        barrier.abort()
    finally:
        stream.close()


def run(args: argparse.Namespace) -> dict:
    barrier = threading.Barrier(args.streams)
    results = [{} for _ in range(args.streams)]
    # Daemon threads: a stream stuck past the deadline is reported, and does not keep the
    # process from exiting.
    threads = [threading.Thread(target=_run_stream, args=(i, args, barrier, results[i]),
                                name=f"stream-{i}", daemon=True)
               for i in range(args.streams)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + args.timeout * (args.frames + 2)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    errors = [r.get("error", "thread did not finish") for r in results if "finished" not in r]
    ok = not errors and all(
        r["answered"] == args.frames and r["extra_answers"] == 0 for r in results
    )
    finished = [r for r in results if "finished" in r]
    wall = (max(r["finished"] for r in finished) - min(r["started"] for r in finished)
            if finished else 0.0)
    answered = sum(r["answered"] for r in results)
    latency = latency_summary([x for r in results for x in r["latencies"]])
    latency.pop("fps", None)  # frames / summed latency: not a throughput with streams in parallel
    return {
        "url": args.url,
        "streams": args.streams,
        "frames_per_stream": args.frames,
        "frame_size": next((r["frame_size"] for r in finished), None),
        "in_flight": args.in_flight,
        "frames_answered": answered,
        "every_frame_answered_once_in_order": ok,
        "errors": errors,
        "aggregate_fps": answered / wall if wall > 0 else None,
        "wall_s": wall,
        "round_trip": latency,
        "per_stream_fps": [r["answered"] / (r["finished"] - r["started"]) for r in finished],
        "host": platform.node(),
        "machine": machine_info(),
    }


def markdown(report: dict) -> str:
    lat, fps = report["round_trip"], report["aggregate_fps"]
    checked = "yes" if report["every_frame_answered_once_in_order"] else "NO"
    row = "| - | - | - | - | - | NO |"
    if fps and lat["count"]:
        row = (f"| {fps:.1f} | {lat['p50_ms']:.1f} | {lat['p90_ms']:.1f} | {lat['p99_ms']:.1f} | "
               f"{lat['max_ms']:.1f} | {checked} |")
    machine = report["machine"]
    return "\n".join([
        (f"# serve_load: {report['streams']} streams x {report['frames_per_stream']} frames of "
         f"{report['frame_size']} (H, W)"),
        "",
        (f"Server {report['url']}; client on {report['host']} ({machine['cores']} CPUs); "
         f"{report['in_flight']} frame(s) in flight per stream; round trips measured by the "
         "client."),
        "",
        ("| aggregate frames/s | round trip p50 ms | p90 ms | p99 ms | max ms | "
        "answered once, in order |"),
        "| --- | --- | --- | --- | --- | --- |",
        row,
        "",
        *(f"- error: {e}" for e in report["errors"]),
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="grpc://127.0.0.1:8001")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--frames", type=int, default=48, help="frames per stream")
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for an answer")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(args)
    prefix = f"serve_load_{args.streams}x{args.frames}_inflight{args.in_flight}"
    stem = write_results(args.out, prefix, platform.node() or "host",
                         dt.datetime.now(dt.timezone.utc), report, markdown)
    print(markdown(report))
    print(f"wrote {stem}.json and .md")
    return 0 if report["every_frame_answered_once_in_order"] else 1


if __name__ == "__main__":
    sys.exit(main())
