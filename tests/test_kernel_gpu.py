"""The fused kernel on a GPU: the Triton JIT path, the custom op's CUDA dispatch and the AOT
launcher (ctypes), each against the float64 reference.

Marked ``gpu``: skipped with a reason where torch sees no CUDA device. The JIT and custom-op checks
run in a subprocess because the interpreter tests of this suite set TRITON_INTERPRET=1 for the
whole process, which would make Triton interpret instead of compile.
"""

from __future__ import annotations

import ctypes
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from softmask.errors import BackendUnavailable
from softmask.ops.reference import soft_masked_attention as reference

REPO = Path(__file__).resolve().parents[1]

# (B, I, S, H, D, forced splits or None, key padding): every BLOCK_I (I = 1/5 -> 16, 20 -> 32,
# 37/40 -> 64), S % 16 == 0 and not (6420, 1000, 700), tail tiles, padding with a fully padded
# batch element, forced splits above 8 (both merge levels) and above the key tiles (empty splits).
JIT_SHAPES = [
    (1, 1, 5, 2, 16, None, False),
    (2, 37, 1000, 8, 32, None, True),
    (1, 40, 25680, 8, 32, None, False),
    (1, 20, 6480, 8, 32, None, False),
    (1, 5, 6420, 8, 32, None, False),
    (3, 5, 700, 2, 64, 7, True),
    (1, 9, 300, 1, 128, 64, False),
    (1, 16, 4096, 2, 16, 20, False),
]

def hard_mask(b: int, i: int, s: int, g: torch.Generator) -> torch.Tensor:
    """[B, I, S] bool hard-mode mask (True = attend) of densities 0.5/0.1/0.01/0.9 by query; query
    0 blocked everywhere (the empty-row rule: it attends to every key), query 1 allowed only the
    last key, query 2 only the second half."""
    density = torch.tensor([0.5, 0.1, 0.01, 0.9])[torch.arange(i) % 4]
    m = torch.rand(b, i, s, generator=g) < density[None, :, None]
    m[:, 0] = False
    if i > 1:
        m[:, 1] = torch.arange(s) == s - 1
    if i > 2:
        m[:, 2] = torch.arange(s) > s // 2
    return m


# One check script per path, its first argument the mode (soft | hard); soft masks are uniform in
# [0, 1), hard ones come from hard_mask above.
COMMON = (
    r"""
import json, sys, torch
from softmask.ops.reference import soft_masked_attention as reference
mode = sys.argv[1]
hard = mode == "hard"
assert mode in ("soft", "hard"), mode
"""
    + inspect.getsource(hard_mask)
    + r"""
def make_mask(b, i, s, g, dtype):
    return hard_mask(b, i, s, g) if hard else torch.rand(b, i, s, generator=g).to(dtype)
"""
)

JIT_CHECK = (
    COMMON
    + r"""
from softmask.kernels import sma_forward
shapes = json.loads(sys.argv[2])
results = []
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    for b, i, s, h, d, splits, pad in shapes:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(b, n, h * d, generator=g).to(dtype).cuda() for n in (i, s, s))
        m = make_mask(b, i, s, g, dtype).cuda()
        # Hard mode never reads alpha: NaN there would show if it did.
        a = torch.full((h,), float("nan")) if hard else torch.rand(h, generator=g) * 32
        a = a.cuda()
        kpm = None
        if pad:
            kpm = (torch.rand(b, s, generator=g) < 0.5).cuda()
            kpm[0] = True
        out = sma_forward(q, k, v, m, a, h, kpm, num_splits=splits, hard=hard)
        m_ref = m if hard else m.double()
        want = reference(q.double(), k.double(), v.double(), m_ref, a.double(), h, kpm, hard=hard)
        err = ((out.double() - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
        zeros = bool(torch.equal(out[0], torch.zeros_like(out[0]))) if pad else True
        results.append([str(dtype), b, i, s, h, d, splits, pad, err, zeros])
json.dump(results, sys.stdout)
"""
)

# The custom op on CUDA tensors: forward must run the fused kernel (counted, in the mode asked),
# backward goes through the op's autograd; both against float64 autograd of the reference. Soft
# mode also differentiates the mask and alpha and runs torch.library.opcheck; hard mode has no
# gradient into the bool mask (and alpha is not read).
OP_CHECK = (
    COMMON
    + r"""
import softmask.kernels as kernels
from softmask.ops.custom_op import soft_masked_attention, soft_masked_attention_op
calls = []
fused = kernels.sma_forward
def counted(*args, **kwargs):
    calls.append(bool(kwargs.get("hard", False)))
    return fused(*args, **kwargs)
kernels.sma_forward = counted
cases = (((torch.float32, False), (torch.float32, True), (torch.float16, True), (torch.bfloat16, False))
         if hard else
         ((torch.float32, False), (torch.float32, True), (torch.float16, False), (torch.bfloat16, True)))
results = []
for dtype, pad in cases:
    g = torch.Generator().manual_seed(3)
    b, i, s, h, d = 2, 13, 777, 8, 32
    make = lambda *shape: torch.randn(*shape, generator=g)
    q, k, v = make(b, i, h * d), make(b, s, h * d), make(b, s, h * d)
    m = make_mask(b, i, s, g, torch.float32)
    a = torch.rand(h, generator=g) * (1 if hard else 16)
    kpm = (torch.rand(b, s, generator=g) < 0.3).cuda() if pad else None
    grad = make(b, i, h * d).cuda()
    if hard:
        ins = [t.to(dtype).cuda().requires_grad_(True) for t in (q, k, v)]
        m, a = m.cuda(), a.cuda()
        args = (*ins, m, a)
    else:
        ins = [t.to(dtype).cuda().requires_grad_(True) for t in (q, k, v, m)]
        ins.append(a.cuda().requires_grad_(True))
        args = tuple(ins)
    before = len(calls)
    out = soft_masked_attention(*args, h, kpm, hard=hard)
    used_kernel = calls[before:] == [hard]
    (out.float() * grad).sum().backward()
    ref_ins = [t.detach().double().requires_grad_(True) for t in ins]
    ref_args = (*ref_ins, m, a.double()) if hard else tuple(ref_ins)
    want = reference(*ref_args, h, kpm, hard=hard)
    (want * grad.double()).sum().backward()
    fwd = ((out.double() - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
    grads = {}
    for name, t, r in zip("qkvma", ins, ref_ins):
        grads[name] = ((t.grad.double() - r.grad).abs().max() / r.grad.abs().max().clamp_min(1e-6)).item()
    results.append([str(dtype), pad, used_kernel, fwd, grads])
if not hard:
    small = tuple(t.detach().float().cuda().requires_grad_(True)
                  for t in (q[:, :4], k[:, :200], v[:, :200], m[:, :4, :200], a))
    torch.library.opcheck(soft_masked_attention_op, (*small, h, None))
json.dump(results, sys.stdout)
"""
)

# GPU tolerances: fp32 products use three TF32 passes (about fp32 accuracy); p is rounded to the
# input dtype before p.v (bf16: 8 mantissa bits).
GPU_TOLERANCE = {"torch.float32": 1e-4, "torch.float16": 2e-3, "torch.bfloat16": 2e-2}
# The backward recomputes through the reference math in the input dtype (fp32 accumulation for
# fp16/bf16 inputs), so its error follows the input rounding.
GRAD_TOLERANCE = {"torch.float32": 1e-4, "torch.float16": 1e-2, "torch.bfloat16": 5e-2}


def _run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return run.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_jit_kernel_matches_reference_on_gpu(mode):
    rows = json.loads(_run(JIT_CHECK, mode, json.dumps(JIT_SHAPES)))
    assert len(rows) == 3 * len(JIT_SHAPES), f"{mode}: {len(rows)} checks ran"
    for dtype, *shape, err, zeros in rows:
        assert err <= GPU_TOLERANCE[dtype], f"{mode} {dtype} {shape}: relative error {err:.3g}"
        assert zeros, f"{mode} {dtype} {shape}: a fully padded batch element must give zeros"


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_custom_op_cuda_dispatch_forward_and_backward(mode):
    rows = json.loads(_run(OP_CHECK, mode))
    assert len(rows) == 4, f"{mode}: {len(rows)} checks ran"
    for dtype, pad, used_kernel, fwd, grads in rows:
        assert used_kernel, f"{mode} {dtype}: the custom op did not dispatch to the fused kernel"
        assert fwd <= GPU_TOLERANCE[dtype], f"{mode} {dtype} padding={pad}: forward {fwd:.3g}"
        for name, err in grads.items():
            assert err <= GRAD_TOLERANCE[dtype], (
                f"{mode} {dtype} padding={pad}: grad {name} {err:.3g}"
            )


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    """SOFTMASK_KERNELS_LIB, else build*/lib/libsoftmask_kernels.so, else a fresh build for this GPU."""
    from softmask.kernels import launcher_ctypes

    given = os.environ.get("SOFTMASK_KERNELS_LIB")
    found = sorted(REPO.glob("build*/lib/libsoftmask_kernels.so"))
    if given:
        path = Path(given)
    elif found:
        path = found[0]
    else:
        try:
            path = launcher_ctypes.build_for_current_gpu(tmp_path_factory.mktemp("kbuild"))
        except BackendUnavailable as failed:  # e.g. a CUDA toolkit below the project's floor
            pytest.skip(str(failed))
    return launcher_ctypes.Launcher(launcher_ctypes.load(path))


def test_a_failed_launcher_build_says_why(tmp_path, monkeypatch):
    """A GPU host whose toolkit cmake refuses: the error carries cmake's own last lines."""
    from softmask.kernels import launcher_ctypes

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    cmake = fake_bin / "cmake"
    cmake.write_text("#!/bin/sh\necho 'CMake Error: CUDA 11.8 is below the floor (12.0)' >&2\n"
                     "exit 1\n")
    cmake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 7))
    with pytest.raises(BackendUnavailable) as failed:
        launcher_ctypes.build_for_current_gpu(tmp_path / "build")
    assert "for sm_87 (cmake -S exited with 1)" in str(failed.value)
    assert "CUDA 11.8 is below the floor (12.0)" in str(failed.value)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    "b,i,s,h,d,splits,pad",
    [
        (1, 1, 5, 2, 16, 0, False),
        (2, 37, 1000, 8, 32, 0, True),
        (1, 40, 25680, 8, 32, 0, False),
        (1, 5, 6480, 8, 32, 0, False),
        (1, 20, 6480, 8, 32, 0, False),
        (1, 9, 6420, 8, 32, 0, False),
        (3, 5, 700, 2, 64, 3, True),
        (1, 16, 4096, 2, 16, 20, False),
        (1, 70, 300, 1, 128, 200, False),
    ],
)
def test_aot_launcher_matches_reference(launcher, dtype, mask_dtype, b, i, s, h, d, splits, pad):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(b, n, h * d, generator=g).to(dtype).cuda() for n in (i, s, s))
    m = torch.rand(b, i, s, generator=g).to(mask_dtype).cuda()
    a = (torch.rand(h, generator=g) * 32).to(dtype).cuda()
    kpm = None
    if pad:
        kpm = (torch.rand(b, s, generator=g) < 0.5).cuda()
        kpm[0] = True
    out = launcher(q, k, v, m, a, h, kpm, splits)
    torch.cuda.synchronize()
    want = reference(q.double(), k.double(), v.double(), m.double(), a.double(), h, kpm)
    err = ((out.double() - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
    assert err <= (1e-4 if dtype == torch.float32 else 2e-3), err
    if pad:
        assert torch.equal(out[0], torch.zeros_like(out[0]))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    "b,i,s,h,d,splits,pad",
    [
        (1, 100, 1024, 8, 32, 0, False),  # Mask2Former, 1/32 scale of a 1024x1024 image
        (2, 200, 4096, 8, 32, 0, False),  # 200 queries, 1/16 scale
        (2, 100, 16384, 8, 32, 0, False),  # 1/8 scale
        (1, 40, 25680, 8, 32, 0, False),
        (2, 37, 1000, 8, 32, 0, True),  # key padding, a fully padded batch element
        (1, 5, 700, 2, 64, 3, False),  # S % 16 != 0: the general kernel
        (3, 70, 300, 1, 128, 200, True),  # forced splits above the key tiles
        (1, 16, 4096, 2, 16, 20, False),  # forced splits on both merge levels
    ],
)
def test_aot_launcher_hard_mode_matches_reference(launcher, dtype, b, i, s, h, d, splits, pad):
    """The launcher's hard mode (bool mask, empty-row rule, alpha NULL) against float64."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(b, n, h * d, generator=g).to(dtype).cuda() for n in (i, s, s))
    m = hard_mask(b, i, s, g).cuda()
    kpm = None
    if pad:
        kpm = (torch.rand(b, s, generator=g) < 0.5).cuda()
        kpm[0] = True
    out = launcher(q, k, v, m, None, h, kpm, splits)
    torch.cuda.synchronize()
    alpha = torch.zeros(h, dtype=torch.float64, device="cuda")  # not read in hard mode
    want = reference(q.double(), k.double(), v.double(), m, alpha, h, kpm, hard=True)
    err = ((out.double() - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
    assert err <= (1e-4 if dtype == torch.float32 else 2e-3), err
    if pad:
        assert torch.equal(out[0], torch.zeros_like(out[0]))


@pytest.mark.gpu
def test_aot_launcher_reuses_a_dirty_workspace(launcher):
    """The merge counters live in the workspace: garbage left there must not change the result."""
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, n, 256, generator=g).half().cuda() for n in (40, 25680, 25680))
    m = torch.rand(1, 40, 25680, generator=g).half().cuda()
    a = torch.rand(8, generator=g).cuda() * 32
    first = launcher(q, k, v, m, a, 8).clone()
    launcher._workspace.fill_(0x7F)
    second = launcher(q, k, v, m, a, 8)
    torch.cuda.synchronize()
    assert torch.equal(first, second)


@pytest.mark.gpu
def test_aot_launcher_rejects_small_workspace(launcher):
    from softmask.kernels.launcher_ctypes import SmaParams

    q = torch.randn(1, 4, 64, device="cuda", dtype=torch.float16)
    k = torch.randn(1, 2000, 64, device="cuda", dtype=torch.float16)
    m = torch.rand(1, 4, 2000, device="cuda", dtype=torch.float16)
    a = torch.ones(2, device="cuda")
    out = torch.empty_like(q)
    params = SmaParams(
        q.data_ptr(),
        k.data_ptr(),
        k.data_ptr(),
        m.data_ptr(),
        a.data_ptr(),
        None,
        out.data_ptr(),
        out.data_ptr(),
        16,
        1,
        4,
        2000,
        2,
        32,
        1,
        1,
        0,
        0,
    )
    lib = launcher.lib
    status = lib.softmask_sma_forward(ctypes.byref(params), None)
    assert status == 4, lib.softmask_status_string(status).decode()
    assert b"workspace needs" in lib.softmask_status_string(status)
