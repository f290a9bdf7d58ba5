"""Op-level CPU benchmark: PyTorch reference vs ONNX Runtime running the op's ONNX function body.

    python benchmarks/op_cpu.py [--quick] [--threads N] [--out benchmarks/results]

For each shape (H = 8, D = 32, fp32): export a module holding only the op with
``softmask.export.export_onnx`` (one SoftMaskedAttention node plus its function body), run it with
ONNX Runtime's CPU provider, and time it against ``softmask.ops.reference`` in eager PyTorch on the
same threads. Also reports the max error of ONNX Runtime against the float64 reference.
Writes ``<out>/op_cpu_<host>_<UTC date-time>.json`` and ``.md``. Runs anywhere (no GPU).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
from results_io import write_results

from softmask.export import export_onnx
from softmask.ops.custom_op import soft_masked_attention
from softmask.ops.reference import soft_masked_attention as reference

logger = logging.getLogger("op_cpu")

HEADS, HEAD_DIM = 8, 32
ALPHA = (32.0, 32.0, 16.0, 16.0, 8.0, 8.0, 4.0, 4.0)
SHAPES = [(1, i, s) for i in (5, 40) for s in (6420, 25680)]
QUICK_SHAPES = [(1, 5, 6420)]


class OpOnly(torch.nn.Module):
    """The op alone, alpha as a parameter (as in HODOR): exports to one custom node."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(ALPHA))

    def forward(self, query, key, value, mask):
        return soft_masked_attention(query, key, value, mask, self.alpha, HEADS)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run_shape(b: int, i: int, s: int, threads: int, repeats: int, workdir: Path) -> dict:
    g = torch.Generator().manual_seed(0)
    e = HEADS * HEAD_DIM
    inputs = (
        torch.randn(b, i, e, generator=g),
        torch.randn(b, s, e, generator=g),
        torch.randn(b, s, e, generator=g),
        torch.rand(b, i, s, generator=g),
    )
    module = OpOnly().eval()
    path = export_onnx(module, inputs, workdir / f"op_{b}_{i}_{s}.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    alpha = module.alpha.detach()

    with torch.no_grad():
        want = reference(*(t.double() for t in inputs), alpha.double(), HEADS)
        got = torch.from_numpy(session.run(None, feed)[0])
        eager_ms = median_ms(lambda: reference(*inputs, alpha, HEADS), repeats)
    ort_ms = median_ms(lambda: session.run(None, feed), repeats)
    return {
        "B": b,
        "I": i,
        "S": s,
        "H": HEADS,
        "D": HEAD_DIM,
        "dtype": "float32",
        "torch_eager_ms": eager_ms,
        "onnxruntime_ms": ort_ms,
        "ort_over_eager": ort_ms / eager_ms,
        "ort_rel_error": ((got.double() - want).abs().max() / want.abs().max()).item(),
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Op CPU benchmark: {report['host']}",
        "",
        (
            f"{report['date']} · {report['cpu']} · {report['threads']} threads · "
            f"torch {report['torch']} · onnxruntime {report['onnxruntime']}"
        ),
        "",
        "| B | I | S | torch eager (ms) | ONNX Runtime (ms) | ORT / eager | ORT rel. error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['B']} | {r['I']} | {r['S']} | {r['torch_eager_ms']:.2f} | "
            f"{r['onnxruntime_ms']:.2f} | {r['ort_over_eager']:.2f} | {r['ort_rel_error']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="one small shape (smoke run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b, i, s in QUICK_SHAPES if args.quick else SHAPES:
            rows.append(run_shape(b, i, s, args.threads, args.repeats, Path(tmp)))
            logger.info("%s", rows[-1])
    now = dt.datetime.now(dt.timezone.utc)
    host = platform.node() or "host"
    report = {
        "host": host,
        "cpu": platform.processor() or platform.machine(),
        "date": now.isoformat(timespec="seconds"),
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "rows": rows,
    }
    write_results(args.out, "op_cpu", host, now, report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
