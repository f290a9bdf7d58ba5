"""Op-level GPU benchmark of the fused soft-masked attention kernel (one run on a lent GPU).

    python benchmarks/op_gpu.py [--launcher PATH | --build-launcher] [--out benchmarks/results]

(a) Correctness on a grid of shapes, against the float64 reference: the Triton JIT path
    (``softmask.kernels.sma_forward``) and the AOT launcher (``libsoftmask_kernels.so`` via ctypes,
    the cubins the TensorRT plugin runs).
(b) Timing with CUDA events, inputs rotated over enough copies to exceed 2x the L2 cache, for
    B in {1, 4}, I in {5, 40}, S in {6420, 25680, 57600}, H = 8, D = 32, fp16:
    fused JIT kernel, AOT launcher, PyTorch eager (the reference: bmm, subtract, softmax, bmm),
    SDPA with the per-head additive mask materialised, FlexAttention under torch.compile.
    Reported: microseconds per call, achieved GB/s over the bytes the op must move
    (K + V + M + Q + O, ``shared/reference/soft_masked_attention.md``) and the percentage of a
    measured device-to-device copy's bandwidth.

Writes ``<out>/op_gpu_<device>_<UTC date-time>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import platform
import statistics
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from results_io import write_results

from softmask.ops.reference import soft_masked_attention as reference

logger = logging.getLogger("op_gpu")

HEADS, HEAD_DIM = 8, 32
ALPHA = (32.0, 32.0, 16.0, 16.0, 8.0, 8.0, 4.0, 4.0)  # HODOR defaults
TIMING_SHAPES = [(b, i, s) for b in (1, 4) for i in (5, 40) for s in (6420, 25680, 57600)]
CHECK_SHAPES = [
    # (B, I, S, H, D, key padding, forced splits)
    (1, 1, 5, 2, 16, False, None),
    (1, 40, 6420, 8, 32, False, None),
    (2, 37, 1000, 8, 32, True, None),
    (4, 5, 25680, 8, 32, True, None),
    (1, 9, 300, 2, 64, False, 64),
    (2, 70, 777, 2, 128, True, 3),
]
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def make_inputs(b, i, s, h, d, dtype, padding, device="cuda", seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v = (torch.randn(b, n, h * d, generator=g).to(device, dtype) for n in (i, s, s))
    m = torch.rand(b, i, s, generator=g).to(device, dtype)
    a = (torch.rand(h, generator=g) * 32).to(device)
    kpm = None
    if padding:
        kpm = (torch.rand(b, s, generator=g) < 0.3).to(device)
        kpm[0, :] = True  # a fully padded batch element: its rows must be zeros
    return q, k, v, m, a, kpm


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()


def check_correctness(impls: dict[str, Callable]) -> list[dict]:
    rows = []
    for name, fn in impls.items():
        dtypes = (torch.float32, torch.float16) if name == "aot" else tuple(TOLERANCE)
        for dtype in dtypes:
            for b, i, s, h, d, padding, splits in CHECK_SHAPES:
                q, k, v, m, a, kpm = make_inputs(b, i, s, h, d, dtype, padding)
                row = {
                    "impl": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "B": b,
                    "I": i,
                    "S": s,
                    "H": h,
                    "D": d,
                    "padding": padding,
                    "splits": splits,
                }
                try:
                    out = fn(q, k, v, m, a, h, kpm, splits)
                    torch.cuda.synchronize()
                    want = reference(
                        q.double(), k.double(), v.double(), m.double(), a.double(), h, kpm
                    )
                    row["rel_error"] = relative_error(out, want)
                    row["tolerance"] = TOLERANCE[dtype]
                    row["ok"] = row["rel_error"] <= TOLERANCE[dtype]
                except Exception as exc:  # noqa: BLE001 - a failed case is a result, not a crash
                    row["ok"], row["error"] = False, f"{type(exc).__name__}: {exc}"
                rows.append(row)
                logger.info("check %s", row)
    return rows


def op_bytes(b: int, i: int, s: int, elem: int = 2) -> int:
    """Bytes the op must move: K + V + M + Q + O (fp16: 1024*B*S + 2*B*I*S + 1024*B*I at E=256)."""
    e = HEADS * HEAD_DIM
    return elem * (2 * b * s * e + b * i * s + 2 * b * i * e)


def time_call(fn: Callable[[int], object], copies: int, iters: int = 50, repeats: int = 5) -> float:
    """Median over repeats of the mean microseconds per call; call j uses input copy j % copies."""
    for j in range(3):
        fn(j % copies)
    torch.cuda.synchronize()
    means = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for j in range(iters):
            fn(j % copies)
        stop.record()
        stop.synchronize()
        means.append(start.elapsed_time(stop) * 1000.0 / iters)
    return statistics.median(means)


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in GB/s (read + write bytes), 1 GiB buffers."""
    n = 1 << 29
    src = torch.empty(n, dtype=torch.float16, device="cuda")
    dst = torch.empty_like(src)
    us = time_call(lambda _j: dst.copy_(src), copies=1, iters=20)
    return 2 * src.numel() * src.element_size() / (us * 1e-6) / 1e9


def sdpa_materialised(q, k, v, m, a, h, kpm=None, splits=None):
    b, i, e = q.shape
    d = e // h
    q4, k4, v4 = (t.view(b, t.shape[1], h, d).transpose(1, 2) for t in (q, k, v))
    bias = (a.view(1, h, 1, 1) * m.unsqueeze(1)).to(q.dtype)  # [B, H, I, S]: the extra bytes
    out = torch.nn.functional.scaled_dot_product_attention(q4, k4, v4, attn_mask=bias)
    return out.transpose(1, 2).reshape(b, i, e)


def make_flex():
    """FlexAttention with score + alpha[h] * M[b, q, kv], compiled once per shape.

    M and alpha are graph inputs (not closure constants), so rotating input copies reuse one
    compiled graph; the 12 timing shapes need more than dynamo's default recompile limit.
    """
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    @torch.compile(dynamic=False)
    def flex_op(q, k, v, m, a):
        b, i, e = q.shape
        h = a.shape[0]
        d = e // h
        q4, k4, v4 = (t.view(b, t.shape[1], h, d).transpose(1, 2) for t in (q, k, v))

        def score_mod(score, bi, hi, qi, ki):
            return score + a[hi] * m[bi, qi, ki]

        out = flex_attention(q4, k4, v4, score_mod=score_mod)
        return out.transpose(1, 2).reshape(b, i, e)

    def run(q, k, v, m, a, h, kpm=None, splits=None):
        return flex_op(q, k, v, m, a)

    return run


def benchmark(impls: dict[str, Callable], copy_gbs: float) -> list[dict]:
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    rows = []
    alpha = torch.tensor(ALPHA, device="cuda")
    for b, i, s in TIMING_SHAPES:
        nbytes = op_bytes(b, i, s)
        copies = max(2, math.ceil(2 * l2 / nbytes) + 1)
        sets = []
        for c in range(copies):
            q, k, v, m, _a, _kpm = make_inputs(
                b, i, s, HEADS, HEAD_DIM, torch.float16, False, seed=c
            )
            sets.append((q, k, v, m))
        for name, fn in impls.items():
            row = {
                "impl": name,
                "B": b,
                "I": i,
                "S": s,
                "H": HEADS,
                "D": HEAD_DIM,
                "dtype": "float16",
                "bytes": nbytes,
                "input_copies": copies,
            }
            try:
                us = time_call(
                    lambda j, fn=fn, sets=sets: fn(*sets[j], alpha, HEADS, None, None), copies
                )
                row["us"] = us
                row["GBps"] = nbytes / (us * 1e-6) / 1e9
                row["pct_copy"] = 100.0 * row["GBps"] / copy_gbs
            except Exception as exc:  # noqa: BLE001 - e.g. FlexAttention unavailable: report it
                row["error"] = f"{type(exc).__name__}: {exc}"
                logger.warning("%s failed at B=%d I=%d S=%d: %s", name, b, i, s, row["error"])
            rows.append(row)
            logger.info("time %s", row)
        torch.cuda.empty_cache()
    return rows


def add_ratios(rows: list[dict]) -> None:
    fused = {
        (r["B"], r["I"], r["S"]): r["us"] for r in rows if r["impl"] == "fused_jit" and "us" in r
    }
    for r in rows:
        key = (r["B"], r["I"], r["S"])
        if "us" in r and key in fused:
            r["speedup_of_fused_jit"] = r["us"] / fused[key]


def markdown(report: dict) -> str:
    lines = [
        f"# Op benchmark: {report['device']}",
        "",
        (
            f"{report['date']} · torch {report['torch']} · triton {report['triton']} · "
            f"copy bandwidth {report['copy_GBps']:.0f} GB/s (measured, read + write)"
        ),
        "",
        "## Correctness (relative max error vs float64 reference)",
        "",
        "| impl | dtype | B | I | S | H | D | padding | splits | rel. error | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["correctness"]:
        err = f"{r['rel_error']:.2e}" if "rel_error" in r else r.get("error", "")
        lines.append(
            f"| {r['impl']} | {r['dtype']} | {r['B']} | {r['I']} | {r['S']} | {r['H']} | "
            f"{r['D']} | {r['padding']} | {r['splits']} | {err} | {r['ok']} |"
        )
    lines += [
        "",
        "## Timing (fp16, H=8, D=32; inputs rotated over > 2x L2)",
        "",
        "| B | I | S | impl | us | GB/s | % of copy | fused JIT speedup (x) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["timing"]:
        if "us" in r:
            lines.append(
                f"| {r['B']} | {r['I']} | {r['S']} | {r['impl']} | {r['us']:.1f} | "
                f"{r['GBps']:.0f} | {r['pct_copy']:.0f} | "
                f"{r.get('speedup_of_fused_jit', float('nan')):.2f} |"
            )
        else:
            lines.append(
                f"| {r['B']} | {r['I']} | {r['S']} | {r['impl']} | failed: "
                f"{r['error'][:80]} | | | |"
            )
    return "\n".join(lines) + "\n"


def load_launcher(args) -> Callable | None:
    from softmask.kernels import launcher_ctypes

    path = args.launcher
    if path is None and args.build_launcher:
        path = launcher_ctypes.build_for_current_gpu(Path(args.build_dir))
    if path is None:
        found = sorted(
            Path(__file__).resolve().parents[1].glob("build*/lib/libsoftmask_kernels.so")
        )
        path = found[0] if found else None
    if path is None:
        logger.warning(
            "no libsoftmask_kernels.so (pass --launcher or --build-launcher): AOT skipped"
        )
        return None
    launcher = launcher_ctypes.Launcher(launcher_ctypes.load(path))
    return lambda q, k, v, m, a, h, kpm=None, splits=None: launcher(
        q, k, v, m, a, h, kpm, splits or 0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--launcher", type=Path, help="libsoftmask_kernels.so to test and time")
    parser.add_argument(
        "--build-launcher",
        action="store_true",
        help="build the launcher for this GPU with cmake + nvcc first",
    )
    parser.add_argument("--build-dir", default="build/op-gpu-launcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: this benchmark compiles the kernel for the GPU")
    if not torch.cuda.is_available():
        parser.error("no CUDA device visible to torch")
    import triton

    from softmask.kernels import sma_forward

    jit = lambda q, k, v, m, a, h, kpm=None, splits=None: sma_forward(
        q, k, v, m, a, h, kpm, num_splits=splits
    )
    aot = load_launcher(args)
    eager = lambda q, k, v, m, a, h, kpm=None, splits=None: reference(q, k, v, m, a, h, kpm)

    checked = {"fused_jit": jit, **({"aot": aot} if aot else {})}
    correctness = check_correctness(checked)
    timed = {
        "fused_jit": jit,
        **({"aot": aot} if aot else {}),
        "eager_reference": eager,
        "sdpa_materialised_mask": sdpa_materialised,
    }
    try:
        timed["flex_attention_compiled"] = make_flex()
    except Exception:  # noqa: BLE001 - report the missing baseline and go on
        logger.warning("FlexAttention unavailable:\n%s", traceback.format_exc())
    copy_gbs = copy_bandwidth()
    timing = benchmark(timed, copy_gbs)
    add_ratios(timing)

    device = torch.cuda.get_device_name(0)
    now = dt.datetime.now(dt.timezone.utc)
    report = {
        "device": device,
        "date": now.isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "copy_GBps": copy_gbs,
        "l2_bytes": torch.cuda.get_device_properties(0).L2_cache_size,
        "correctness": correctness,
        "timing": timing,
    }
    write_results(args.out, "op_gpu", device, now, report, markdown)
    return 0 if all(r["ok"] for r in correctness) else 1


if __name__ == "__main__":
    sys.exit(main())
