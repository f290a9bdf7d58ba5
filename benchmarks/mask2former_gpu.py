"""The hard (Mask2Former) mode at Mask2Former's shapes, for ``op_gpu.py --mask2former``.

Shapes: queries 100 and 200, H = 8, D = 32, keys = the pixel decoder's 1/32, 1/16 and 1/8 levels
of 512x512 and 1024x1024 images (256, 1024, 4096, 16384), batch 1 and 2, fp16. Masks: bool,
True = attend, ~30 % of keys allowed (``rand < 0.3``) and query 0 fully blocked so the empty-row
rule runs on every call.

Implementations (same signature as ``op_gpu``'s: ``fn(q, k, v, m, a, h, kpm, splits)``): the fused
hard kernel (JIT, and the AOT launcher when loaded) and PyTorch SDPA with a bool mask after the
empty-row rule applied the way Mask2Former's decoder does it before every attention call
(``attn_mask[attn_mask.sum(-1) == S] = False`` on its True-means-blocked mask; here True means
attend, so a row with no True becomes all True). That rule's cost is part of the SDPA row.
"""

from __future__ import annotations

import torch

HEADS, HEAD_DIM = 8, 32
KEYS = (256, 1024, 4096, 16384)
SHAPES = [(b, i, s) for b in (1, 2) for i in (100, 200) for s in KEYS]
QUICK_SHAPES = [(1, 100, 1024), (2, 200, 16384)]
ALLOWED_FRACTION = 0.3


def make_inputs(b: int, i: int, s: int, dtype=torch.float16, seed: int = 0, device="cuda"):
    """(q, k, v, bool mask, alpha) for one shape; alpha is unused by the hard mode (ones)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    e = HEADS * HEAD_DIM
    q, k, v = (torch.randn(b, n, e, generator=g).to(device, dtype) for n in (i, s, s))
    m = torch.rand(b, i, s, generator=g) < ALLOWED_FRACTION
    m[:, 0] = False
    return q, k, v, m.to(device), torch.ones(HEADS, device=device)


def op_bytes(b: int, i: int, s: int, elem: int = 2) -> int:
    """Bytes the hard op must move: K + V + Q + O in ``elem`` bytes, the mask 1 byte per key."""
    e = HEADS * HEAD_DIM
    return elem * (2 * b * s * e + 2 * b * i * e) + b * i * s


def sdpa_bool(q, k, v, m, a, h, kpm=None, splits=None):
    """SDPA with a bool mask after Mask2Former's empty-row rule (recomputed per call)."""
    b, i, e = q.shape
    d = e // h
    allowed = m | ~m.any(dim=-1, keepdim=True)
    q4, k4, v4 = (t.view(b, t.shape[1], h, d).transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q4, k4, v4, attn_mask=allowed[:, None])
    return out.transpose(1, 2).reshape(b, i, e)


def hard_jit():
    """The fused hard kernel through the Triton JIT path."""
    from softmask.kernels import sma_forward

    def run(q, k, v, m, a, h, kpm=None, splits=None):
        return sma_forward(q, k, v, m, a, h, kpm, num_splits=splits, hard=True)

    return run


def hard_aot(aot):
    """The fused hard kernel through the AOT launcher (``op_gpu.load_launcher``'s impl); alpha
    goes as NULL: the hard mode never reads it."""

    def run(q, k, v, m, a, h, kpm=None, splits=None):
        return aot(q, k, v, m, None, h, kpm, splits)

    return run


def check(impls: dict, shapes, reference, tolerance: float = 2e-3) -> list[dict]:
    """Each impl at each shape (fp16) against the float64 reference in hard mode."""
    rows = []
    for b, i, s in shapes:
        q, k, v, m, a = make_inputs(b, i, s)
        want = reference(q.double(), k.double(), v.double(), m, a.double(), HEADS, hard=True)
        scale = want.abs().max().clamp_min(1e-6)
        for name, fn in impls.items():
            row = {"impl": name, "B": b, "I": i, "S": s, "tolerance": tolerance}
            try:
                out = fn(q, k, v, m, a, HEADS)
                torch.cuda.synchronize()
                row["rel_error"] = ((out.double() - want).abs().max() / scale).item()
                row["ok"] = row["rel_error"] <= tolerance
            except Exception as exc:  # noqa: BLE001 - a failed impl is a result
                row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
            rows.append(row)
        del want
    return rows


def markdown(report: dict) -> str:
    """The section's tables: correctness, then device time with ratios and % of copy."""
    lines = [
        ("## Mask2Former shapes, hard mode (fp16, H=8, D=32, bool mask ~30 % allowed, query 0 "
        "empty)"),
        "",
        "| impl | B | I | S | rel. error | ok |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.get("mask2former_correctness") or []:
        err = f"{r['rel_error']:.2e}" if "rel_error" in r else r.get("error", "")
        lines.append(f"| {r['impl']} | {r['B']} | {r['I']} | {r['S']} | {err} | {r['ok']} |")
    lines += [
        "",
        ("device us: per call inside a CUDA graph; x fused = device time over the fused JIT "
        "kernel's; % of copy: the op's bytes (K, V, Q, O in fp16, mask 1 byte/key) over the "
        "device time, against the measured copy bandwidth (CUDA events)."),
        "",
        "| B | I | S | impl | device us | method | GB/s | % of copy | x fused JIT | x fused AOT |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.get("mask2former_timing") or []:
        if "us" in r:
            lines.append(
                f"| {r['B']} | {r['I']} | {r['S']} | {r['impl']} | {r['us']:.1f} | "
                f"{r['method']} | {r['GBps']:.0f} | {r['pct_copy']:.0f} | "
                f"{r.get('speedup_of_hard_jit', float('nan')):.2f} | "
                f"{r.get('speedup_of_hard_aot', float('nan')):.2f} |"
            )
        else:
            lines.append(
                f"| {r.get('B')} | {r.get('I')} | {r.get('S')} | {r['impl']} | failed: "
                f"{r.get('error', '')[:80]} | | | | | |"
            )
    return "\n".join(lines) + "\n"
