"""Op-level CPU benchmark: PyTorch reference vs ONNX Runtime running the op's ONNX function body.

    python benchmarks/op_cpu.py [--quick | --mask2former] [--threads N] [--out benchmarks/results]

For each shape (H = 8, D = 32, fp32): export a module holding only the op with
``softmask.export.export_onnx`` (one SoftMaskedAttention node plus its function body), run it with
ONNX Runtime's CPU provider, and time it against ``softmask.ops.reference`` in eager PyTorch on the
same threads. Also reports the max error of ONNX Runtime against the float64 reference.

``--mask2former``: the hard mode at Mask2Former's shapes (100 queries; keys at 1/32, 1/16 and 1/8
of 512x512 and 1024x1024: 256 to 16,384), a bool mask letting ~30 % of keys through, with PyTorch's
``scaled_dot_product_attention`` and a boolean mask as one more baseline.
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
MASK2FORMER_SHAPES = [(1, 100, s) for s in (256, 1024, 4096, 16384)]


class OpOnly(torch.nn.Module):
    """The op alone, alpha as a parameter (as in HODOR): exports to one custom node."""

    def __init__(self, hard: bool = False) -> None:
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(ALPHA))
        self.hard = hard

    def forward(self, query, key, value, mask):
        return soft_masked_attention(query, key, value, mask, self.alpha, HEADS, hard=self.hard)


def sdpa_bool(query, key, value, mask) -> torch.Tensor:
    """PyTorch SDPA with a boolean mask [B, 1, I, S] broadcast over the heads (hard mode)."""
    b, i, e = query.shape
    q, k, v = (t.view(b, -1, HEADS, e // HEADS).transpose(1, 2) for t in (query, key, value))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
    return out.transpose(1, 2).reshape(b, i, e)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run_shape(
    b: int, i: int, s: int, threads: int, repeats: int, workdir: Path, hard: bool = False
) -> dict:
    g = torch.Generator().manual_seed(0)
    e = HEADS * HEAD_DIM
    mask = torch.rand(b, i, s, generator=g)
    inputs = (
        torch.randn(b, i, e, generator=g),
        torch.randn(b, s, e, generator=g),
        torch.randn(b, s, e, generator=g),
        mask > 0.7 if hard else mask,
    )
    module = OpOnly(hard).eval()
    path = export_onnx(module, inputs, workdir / f"op_{b}_{i}_{s}.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    alpha = module.alpha.detach()

    double = [t if t.dtype == torch.bool else t.double() for t in inputs]
    with torch.no_grad():
        want = reference(*double, alpha.double(), HEADS, hard=hard)
        got = torch.from_numpy(session.run(None, feed)[0])
        eager_ms = median_ms(lambda: reference(*inputs, alpha, HEADS, hard=hard), repeats)
        sdpa_ms = median_ms(lambda: sdpa_bool(*inputs), repeats) if hard else None
    ort_ms = median_ms(lambda: session.run(None, feed), repeats)
    return {
        "B": b,
        "I": i,
        "S": s,
        "H": HEADS,
        "D": HEAD_DIM,
        "dtype": "float32",
        "mask": "hard (bool)" if hard else "soft",
        "torch_eager_ms": eager_ms,
        "sdpa_bool_ms": sdpa_ms,
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
        ("| mask | B | I | S | torch eager (ms) | SDPA bool mask (ms) | ONNX Runtime (ms) | "
         "ORT / eager | ORT rel. error |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        sdpa = "-" if r.get("sdpa_bool_ms") is None else f"{r['sdpa_bool_ms']:.2f}"
        lines.append(
            f"| {r.get('mask', 'soft')} | {r['B']} | {r['I']} | {r['S']} | "
            f"{r['torch_eager_ms']:.2f} | {sdpa} | {r['onnxruntime_ms']:.2f} | "
            f"{r['ort_over_eager']:.2f} | {r['ort_rel_error']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="one small shape (smoke run)")
    parser.add_argument("--mask2former", action="store_true",
                        help="hard mode at Mask2Former's shapes, with SDPA (bool mask)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shapes = MASK2FORMER_SHAPES if args.mask2former else QUICK_SHAPES if args.quick else SHAPES
        for b, i, s in shapes:
            rows.append(run_shape(b, i, s, args.threads, args.repeats, Path(tmp),
                                  hard=args.mask2former))
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
    name = "op_cpu_mask2former" if args.mask2former else "op_cpu"
    write_results(args.out, name, host, now, report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
