"""Op-level GPU benchmark of the fused soft-masked attention kernel (one run on a lent GPU).

    python benchmarks/op_gpu.py [--launcher PATH | --build-launcher] [--out benchmarks/results]
                                [--quick] [--mask2former]

Sections, each reported on its own and none able to stop the others (a failed launcher build, a
stale or crashing ``libsoftmask_kernels.so``, an unavailable FlexAttention are results, not
crashes):

1. launcher: build (``--build-launcher``) or find ``libsoftmask_kernels.so``, refuse one older
   than the kernel sources, then smoke-test it in a subprocess (a broken library must not take
   this process's CUDA context down with it);
2. copy: device-to-device copy bandwidth (read + write bytes), the reference for "% of copy";
3. correctness: the Triton JIT path (fp32/fp16/bf16) and the AOT launcher (fp32/fp16) against
   the float64 reference on a grid of shapes covering every kernel variant;
4. timing: fp16, H = 8, D = 32, B in {1, 4}, I in {5, 40}, S in {6420, 25680, 57600}: fused JIT
   kernel, AOT launcher, PyTorch eager (the reference), SDPA with the per-head additive mask
   materialised in the compute dtype, FlexAttention under ``torch.compile`` (dynamic shapes when
   that compiles, else one graph per shape; the report says which).

``--mask2former`` runs sections 1 and 2, then the hard (Mask2Former) mode instead of 3 and 4: the
fused hard kernel (JIT and AOT launcher) against the float64 reference and timed against SDPA with
a bool mask at Mask2Former's shapes (``mask2former_gpu.py``); written as ``op_gpu_mask2former_*``.

Timing: *device* time per call from CUDA graphs (``GRAPH_CALLS`` calls captured, inputs rotated
over enough copies to exceed 2x the L2 cache so every call reads from DRAM, median of replays),
so host overhead is excluded; if a graph cannot be captured, the profiler's summed kernel times
(method recorded per row). *Host* time per call separately: wall time of back-to-back calls
without synchronising. *Eager* time: CUDA events around back-to-back calls, what a caller without
graphs sees. GB/s are the op's floor bytes (K + V + M + Q + O, ``docs/reference/
soft_masked_attention.md``) over the device time.

Writes ``<out>/op_gpu_<device>_<UTC date-time>.json`` and ``.md``. Exit status 1 when a
correctness check fails or a section failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import mask2former_gpu
import torch
from copy_bandwidth import events_gbs
from results_io import write_results

from softmask.ops.reference import soft_masked_attention as reference

logger = logging.getLogger("op_gpu")

REPO = Path(__file__).resolve().parents[1]
HEADS, HEAD_DIM = 8, 32
ALPHA = (32.0, 32.0, 16.0, 16.0, 8.0, 8.0, 4.0, 4.0)  # HODOR defaults
TIMING_SHAPES = [(b, i, s) for b in (1, 4) for i in (5, 40) for s in (6420, 25680, 57600)]
QUICK_TIMING_SHAPES = [(1, 5, 6480), (1, 40, 25680), (4, 40, 57600)]
CHECK_SHAPES = [
    # (B, I, S, H, D, key padding, forced splits): every BLOCK_I, aligned and unaligned S, both
    # merge levels, empty splits, padding with a fully padded batch element.
    (1, 1, 5, 2, 16, False, None),
    (1, 40, 6420, 8, 32, False, None),
    (1, 20, 6480, 8, 32, False, None),
    (2, 37, 1000, 8, 32, True, None),
    (4, 5, 25680, 8, 32, True, None),
    (1, 16, 4096, 2, 16, False, 20),
    (1, 9, 300, 2, 64, False, 64),
    (2, 70, 777, 2, 128, True, 3),
]
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}
GRAPH_CALLS = 20
# What libsoftmask_kernels.so is built from: a library older than any of these is stale.
KERNEL_SOURCES = (
    "softmask/kernels/triton_kernels.py",
    "softmask/kernels/aot.py",
    "softmask/kernels/heuristics.py",
    "plugins/softmaskKernels",
)

Impl = Callable[..., torch.Tensor]


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


def op_bytes(b: int, i: int, s: int, elem: int = 2) -> int:
    """Bytes the op must move: K + V + M + Q + O (fp16: 1024*B*S + 2*B*I*S + 1024*B*I at E=256)."""
    e = HEADS * HEAD_DIM
    return elem * (2 * b * s * e + b * i * s + 2 * b * i * e)


# ---------------------------------------------------------------- implementations


def sdpa_materialised(q, k, v, m, a, h, kpm=None, splits=None):
    """SDPA with the per-head additive mask alpha[h] * M built as [B, H, I, S] in q's dtype."""
    b, i, e = q.shape
    d = e // h
    q4, k4, v4 = (t.view(b, t.shape[1], h, d).transpose(1, 2) for t in (q, k, v))
    bias = a.to(q.dtype).view(1, h, 1, 1) * m.to(q.dtype).unsqueeze(1)
    out = torch.nn.functional.scaled_dot_product_attention(q4, k4, v4, attn_mask=bias)
    return out.transpose(1, 2).reshape(b, i, e)


def make_flex(dynamic: bool) -> Impl:
    """FlexAttention with ``score + alpha[h] * M[b, q, kv]``; M and alpha are graph inputs."""
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    @torch.compile(dynamic=dynamic)
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


def pick_flex() -> tuple[Impl | None, dict]:
    """FlexAttention compiled with dynamic shapes if a small probe compiles and is correct."""
    section: dict = {}
    for dynamic in (True, False):
        try:
            fn = make_flex(dynamic)
            for s in (300, 700):  # two key counts: a dynamic graph must take both
                q, k, v, m, a, _ = make_inputs(1, 5, s, HEADS, HEAD_DIM, torch.float16, False)
                err = relative_error(
                    fn(q, k, v, m, a, HEADS),
                    reference(q.double(), k.double(), v.double(), m.double(), a.double(), HEADS),
                )
                if err > TOLERANCE[torch.float16]:
                    raise RuntimeError(f"probe error {err:.3g} at S={s}")
            section.update(ok=True, dynamic=dynamic)
            return fn, section
        except Exception as exc:  # noqa: BLE001 - try static shapes, then report
            section[f"dynamic={dynamic}"] = f"{type(exc).__name__}: {exc}"[:2000]
            logger.warning("FlexAttention dynamic=%s unavailable: %s", dynamic, exc)
            torch._dynamo.reset()
    section["ok"] = False
    return None, section


# ---------------------------------------------------------------- launcher section


def _stale(path: Path) -> str | None:
    """Why the library is older than the sources it embeds, or None."""
    built = path.stat().st_mtime
    for name in KERNEL_SOURCES:
        path_or_dir = REPO / name
        for src in [path_or_dir] if path_or_dir.is_file() else path_or_dir.rglob("*"):
            if "tests" in src.relative_to(REPO).parts or src.suffix not in (
                ".py",
                ".cpp",
                ".h",
                ".cu",
                ".txt",
            ):
                continue
            if src.stat().st_mtime > built:
                return f"{path} is older than {src.relative_to(REPO)}: rebuild it"
    return None


SMOKE = r"""
import sys, torch
from softmask.kernels import launcher_ctypes
from softmask.ops.reference import soft_masked_attention as reference
lib = launcher_ctypes.Launcher(launcher_ctypes.load(sys.argv[1]))
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, n, 256, generator=g).half().cuda() for n in (7, 1000, 1000))
m = torch.rand(1, 7, 1000, generator=g).half().cuda()
a = torch.rand(8, generator=g).cuda() * 16
out = lib(q, k, v, m, a, 8)
torch.cuda.synchronize()
want = reference(q.double(), k.double(), v.double(), m.double(), a.double(), 8)
err = ((out.double() - want).abs().max() / want.abs().max()).item()
print(err)
sys.exit(0 if err <= 2e-3 else 3)
"""


def load_launcher(args, section: dict) -> Impl | None:
    """The AOT launcher as an Impl, or None with the reason recorded in ``section``."""
    from softmask.kernels import launcher_ctypes

    try:
        path = args.launcher
        if path is None and args.build_launcher:
            start = time.perf_counter()
            path = launcher_ctypes.build_for_current_gpu(Path(args.build_dir))
            section["build_s"] = round(time.perf_counter() - start, 1)
        if path is None:
            found = sorted(REPO.glob("build*/lib/libsoftmask_kernels.so"))
            path = found[0] if found else None
        if path is None:
            raise FileNotFoundError(
                "no libsoftmask_kernels.so (pass --launcher or --build-launcher)"
            )
        section["path"] = str(path)
        stale = _stale(Path(path))
        if stale and not args.allow_stale:
            raise RuntimeError(stale)
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        smoke = subprocess.run(
            [sys.executable, "-c", SMOKE, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if smoke.returncode != 0:
            raise RuntimeError(
                f"smoke test of {path} failed (exit {smoke.returncode}): "
                f"{(smoke.stdout + smoke.stderr)[-1500:]}"
            )
        launcher = launcher_ctypes.Launcher(launcher_ctypes.load(path))
        section["ok"] = True
    except Exception as exc:  # noqa: BLE001 - the AOT rows are skipped, the run goes on
        section.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:3000])
        if isinstance(exc, subprocess.CalledProcessError):  # the cmake build's own words
            section["output"] = (exc.stdout or b"")[-2000:].decode(errors="replace") + (
                exc.stderr or b""
            )[-2000:].decode(errors="replace")
        logger.warning("AOT launcher unavailable: %s", section["error"])
        return None
    return lambda q, k, v, m, a, h, kpm=None, splits=None: launcher(
        q, k, v, m, a, h, kpm, splits or 0
    )


# ---------------------------------------------------------------- timing


def device_time_graph(fn: Callable[[int], object], copies: int, replays: int = 7) -> float:
    """Median microseconds per call, device only: GRAPH_CALLS calls captured in a CUDA graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for j in range(3):
            fn(j % copies)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for j in range(GRAPH_CALLS):
            fn(j % copies)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1000.0 / GRAPH_CALLS)
    del graph
    return statistics.median(times)


def device_time_profiler(fn: Callable[[int], object], copies: int, calls: int = 20) -> float:
    """Microseconds of GPU kernel time per call (sum of kernel durations), from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    for j in range(3):
        fn(j % copies)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for j in range(calls):
            fn(j % copies)
        torch.cuda.synchronize()
    from torch.autograd import DeviceType

    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    if not kernels:
        raise RuntimeError("the profiler recorded no GPU kernel")
    return sum(e.time_range.elapsed_us() for e in kernels) / calls


def host_and_eager_time(fn: Callable[[int], object], copies: int, calls: int = 50):
    """(host us per call without sync, eager us per call from events), medians of 5 repeats."""
    hosts, eagers = [], []
    for _ in range(5):
        torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        for j in range(calls):
            fn(j % copies)
        hosts.append((time.perf_counter() - t0) * 1e6 / calls)
        stop.record()
        stop.synchronize()
        eagers.append(start.elapsed_time(stop) * 1000.0 / calls)
    return statistics.median(hosts), statistics.median(eagers)


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in GB/s (read + write bytes) of 4 GiB buffers, timed with
    events (``copy_bandwidth.py``). A 1 GiB copy replayed in a CUDA graph read 2711 GB/s on an
    H200 where this method read 4263 (benchmarks/results/NVIDIA-H200-20261204/README.md)."""
    return events_gbs(4 << 30)


def check_correctness(impls: dict[str, Impl]) -> list[dict]:
    rows = []
    for name, fn in impls.items():
        dtypes = (torch.float32, torch.float16) if name == "aot" else tuple(TOLERANCE)
        for dtype in dtypes:
            for b, i, s, h, d, padding, splits in CHECK_SHAPES:
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
                    q, k, v, m, a, kpm = make_inputs(b, i, s, h, d, dtype, padding)
                    out = fn(q, k, v, m, a, h, kpm, splits)
                    torch.cuda.synchronize()
                    want = reference(
                        q.double(), k.double(), v.double(), m.double(), a.double(), h, kpm
                    )
                    row["rel_error"] = relative_error(out, want)
                    row["tolerance"] = TOLERANCE[dtype]
                    row["ok"] = row["rel_error"] <= TOLERANCE[dtype]
                    if padding:
                        row["ok"] = row["ok"] and bool(
                            torch.equal(out[0], torch.zeros_like(out[0]))
                        )
                except Exception as exc:  # noqa: BLE001 - a failed case is a result, not a crash
                    row["ok"], row["error"] = False, f"{type(exc).__name__}: {exc}"[:500]
                rows.append(row)
                logger.info("check %s", row)
    return rows


def soft_inputs(b: int, i: int, s: int, seed: int):
    """(q, k, v, m) of the soft timing rows, fp16."""
    return make_inputs(b, i, s, HEADS, HEAD_DIM, torch.float16, False, seed=seed)[:4]


def hard_inputs(b: int, i: int, s: int, seed: int):
    """(q, k, v, bool m) of the Mask2Former rows, fp16."""
    return mask2former_gpu.make_inputs(b, i, s, seed=seed)[:4]


def benchmark(
    impls: dict[str, Impl],
    copy_gbs: float,
    shapes,
    inputs: Callable[[int, int, int, int], tuple] = soft_inputs,
    nbytes_of: Callable[[int, int, int], int] = op_bytes,
) -> list[dict]:
    """Time every impl at every (B, I, S): ``inputs(b, i, s, seed)`` gives (q, k, v, m),
    ``nbytes_of(b, i, s)`` the op's floor bytes."""
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    rows = []
    alpha = torch.tensor(ALPHA, device="cuda")
    for b, i, s in shapes:
        nbytes = nbytes_of(b, i, s)
        copies = max(2, math.ceil(2 * l2 / nbytes) + 1)
        try:
            sets = [inputs(b, i, s, c) for c in range(copies)]
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: report the shape
            rows.append({"impl": "inputs", "B": b, "I": i, "S": s, "error": repr(exc)[:500]})
            continue
        for name, fn in impls.items():
            row = {"impl": name, "B": b, "I": i, "S": s, "H": HEADS, "D": HEAD_DIM}
            row.update(dtype="float16", bytes=nbytes, input_copies=copies)
            call = lambda j, fn=fn, sets=sets: fn(*sets[j], alpha, HEADS, None, None)
            try:
                try:
                    row["us"], row["method"] = device_time_graph(call, copies), "cuda-graph"
                except Exception as exc:  # noqa: BLE001 - not capturable: profiler kernel times
                    row["graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
                    torch.cuda.synchronize()
                    row["us"], row["method"] = device_time_profiler(call, copies), "profiler"
                row["host_us"], row["eager_us"] = host_and_eager_time(call, copies)
                row["GBps"] = nbytes / (row["us"] * 1e-6) / 1e9
                row["pct_copy"] = 100.0 * row["GBps"] / copy_gbs if copy_gbs else float("nan")
            except Exception as exc:  # noqa: BLE001 - report and go on with the next impl
                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                logger.warning("%s failed at B=%d I=%d S=%d: %s", name, b, i, s, row["error"])
            rows.append(row)
            logger.info("time %s", row)
        del sets
        torch.cuda.empty_cache()
    return rows


def add_ratios(rows: list[dict], fused_impls: tuple[str, ...] = ("fused_jit", "aot")) -> None:
    """speedup_of_<impl> = this row's device time / that impl's, same shape."""
    by_shape: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if "us" in r:
            by_shape.setdefault((r["B"], r["I"], r["S"]), {})[r["impl"]] = r["us"]
    for r in rows:
        times = by_shape.get((r.get("B"), r.get("I"), r.get("S")), {})
        for fused in fused_impls:
            if "us" in r and fused in times:
                r[f"speedup_of_{fused}"] = r["us"] / times[fused]


def markdown(report: dict) -> str:
    lines = [
        f"# Op benchmark: {report.get('device', '?')}",
        "",
        (
            f"{report['date']} · torch {report.get('torch')} · triton {report.get('triton')} · "
            f"copy bandwidth {report.get('copy_GBps', float('nan')):.0f} GB/s (measured, read + "
            "write)"
        ),
        "",
        "## Sections",
        "",
        "| section | ok | detail |",
        "| --- | --- | --- |",
    ]
    for name, sec in report["sections"].items():
        detail = sec.get("error") or json.dumps({k: v for k, v in sec.items() if k != "ok"})
        lines.append(f"| {name} | {sec.get('ok')} | {str(detail)[:300]} |")
    lines += [
        "",
        "## Correctness (relative max error vs float64 reference)",
        "",
        "| impl | dtype | B | I | S | H | D | padding | splits | rel. error | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.get("correctness", []):
        err = f"{r['rel_error']:.2e}" if "rel_error" in r else r.get("error", "")
        lines.append(
            f"| {r['impl']} | {r['dtype']} | {r['B']} | {r['I']} | {r['S']} | {r['H']} | "
            f"{r['D']} | {r['padding']} | {r['splits']} | {err} | {r['ok']} |"
        )
    lines += [
        "",
        "## Timing (fp16, H=8, D=32; inputs rotated over > 2x L2)",
        "",
        "device us: per call inside a CUDA graph (host excluded); host us: Python + launch cost per",
        "call; eager us: events around back-to-back calls. x = this impl's device time over the",
        "fused kernel's (JIT / AOT).",
        "",
        (
            "| B | I | S | impl | device us | method | GB/s | % of copy | host us | eager us | "
            "x JIT | x AOT |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.get("timing", []):
        if "us" in r:
            lines.append(
                f"| {r['B']} | {r['I']} | {r['S']} | {r['impl']} | {r['us']:.1f} | "
                f"{r['method']} | {r['GBps']:.0f} | {r['pct_copy']:.0f} | "
                f"{r.get('host_us', float('nan')):.1f} | {r.get('eager_us', float('nan')):.1f} | "
                f"{r.get('speedup_of_fused_jit', float('nan')):.2f} | "
                f"{r.get('speedup_of_aot', float('nan')):.2f} |"
            )
        else:
            lines.append(
                f"| {r.get('B')} | {r.get('I')} | {r.get('S')} | {r['impl']} | failed: "
                f"{r.get('error', '')[:80]} | | | | | | | |"
            )
    return "\n".join(lines) + "\n"


def run_section(report: dict, name: str, fn: Callable[[], object]):
    """Run one section; an exception is recorded in report['sections'][name], never raised."""
    start = time.perf_counter()
    try:
        result = fn()
        report["sections"].setdefault(name, {}).setdefault("ok", True)
        return result
    except Exception as exc:  # noqa: BLE001 - every section reports and the run continues
        report["sections"][name] = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
        logger.error("section %s failed: %s", name, exc)
        return None
    finally:
        report["sections"].setdefault(name, {})["seconds"] = round(time.perf_counter() - start, 1)


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
    parser.add_argument(
        "--allow-stale", action="store_true", help="use a launcher older than the kernel sources"
    )
    parser.add_argument("--quick", action="store_true", help="fewer timing shapes")
    parser.add_argument(
        "--mask2former",
        action="store_true",
        help="the hard mode at Mask2Former's shapes instead of the soft sections",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: this benchmark compiles the kernel for the GPU")
    if not torch.cuda.is_available():
        logger.error("no CUDA device visible to torch: nothing to benchmark")
        return 1
    import triton

    now = dt.datetime.now(dt.timezone.utc)
    device = torch.cuda.get_device_name(0)
    report: dict = {
        "device": device,
        "date": now.isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "l2_bytes": torch.cuda.get_device_properties(0).L2_cache_size,
        "sections": {},
    }

    from softmask.kernels import sma_forward

    def jit(q, k, v, m, a, h, kpm=None, splits=None):
        return sma_forward(q, k, v, m, a, h, kpm, num_splits=splits)

    def eager(q, k, v, m, a, h, kpm=None, splits=None):
        return reference(q, k, v, m, a, h, kpm)

    report["sections"]["launcher"] = {}
    aot = load_launcher(args, report["sections"]["launcher"])
    if args.mask2former:
        return run_mask2former(args, report, now, aot)
    checked = {"fused_jit": jit, **({"aot": aot} if aot else {})}
    report["correctness"] = run_section(report, "correctness", lambda: check_correctness(checked))
    if report["correctness"] and not all(r["ok"] for r in report["correctness"]):
        report["sections"]["correctness"]["ok"] = False
    report["copy_GBps"] = run_section(report, "copy", copy_bandwidth) or float("nan")
    torch.cuda.empty_cache()
    flex, report["sections"]["flex_attention"] = pick_flex()
    timed = {
        "fused_jit": jit,
        **({"aot": aot} if aot else {}),
        "eager_reference": eager,
        "sdpa_materialised_mask": sdpa_materialised,
        **({"flex_attention_compiled": flex} if flex else {}),
    }
    shapes = QUICK_TIMING_SHAPES if args.quick else TIMING_SHAPES
    report["timing"] = run_section(
        report, "timing", lambda: benchmark(timed, report["copy_GBps"], shapes)
    )
    if report["timing"]:
        add_ratios(report["timing"])
    write_results(args.out, "op_gpu", device, now, report, markdown)
    failed = [n for n, s in report["sections"].items() if not s.get("ok")]
    if failed:
        logger.error("sections with failures: %s", ", ".join(failed))
    return 1 if failed else 0


def run_mask2former(args, report: dict, now: dt.datetime, aot: Impl | None) -> int:
    """Copy bandwidth, then the hard mode's correctness and timing (``mask2former_gpu``)."""
    report["copy_GBps"] = run_section(report, "copy", copy_bandwidth) or float("nan")
    torch.cuda.empty_cache()
    fused = {"hard_jit": mask2former_gpu.hard_jit()}
    if aot is not None:
        fused["hard_aot"] = mask2former_gpu.hard_aot(aot)
    shapes = mask2former_gpu.QUICK_SHAPES if args.quick else mask2former_gpu.SHAPES
    timed = {**fused, "sdpa_bool_mask2former": mask2former_gpu.sdpa_bool}
    # The SDPA baseline is checked too: it must compute the same op to be a fair comparison.
    report["mask2former_correctness"] = run_section(
        report, "mask2former_correctness", lambda: mask2former_gpu.check(timed, shapes, reference)
    )
    rows = report["mask2former_correctness"]
    if rows and not all(r["ok"] for r in rows):
        report["sections"]["mask2former_correctness"]["ok"] = False
    report["mask2former_timing"] = run_section(
        report,
        "mask2former_timing",
        lambda: benchmark(
            timed, report["copy_GBps"], shapes, hard_inputs, mask2former_gpu.op_bytes
        ),
    )
    if report["mask2former_timing"]:
        add_ratios(report["mask2former_timing"], ("hard_jit", "hard_aot"))

    def render(rep: dict) -> str:
        head = markdown({**rep, "correctness": [], "timing": []}).split("\n## Correctness")[0]
        return head + "\n" + mask2former_gpu.markdown(rep)

    write_results(args.out, "op_gpu_mask2former", report["device"], now, report, render)
    failed = [n for n, s in report["sections"].items() if not s.get("ok")]
    if failed:
        logger.error("sections with failures: %s", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
