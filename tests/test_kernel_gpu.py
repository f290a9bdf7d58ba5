"""The fused kernel on a GPU: the Triton JIT path and the AOT launcher (ctypes), vs the reference.

Marked ``gpu``: skipped with a reason where torch sees no CUDA device. The JIT checks run in a
subprocess because the interpreter tests of this suite set TRITON_INTERPRET=1 for the whole
process, which would make Triton interpret instead of compile.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from softmask.ops.reference import soft_masked_attention as reference

REPO = Path(__file__).resolve().parents[1]

JIT_CHECK = r"""
import json, sys, torch
from softmask.kernels import sma_forward
from softmask.ops.reference import soft_masked_attention as reference
results = []
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    for b, i, s, h, d, splits, pad in [
        (1, 1, 5, 2, 16, None, False), (2, 37, 1000, 8, 32, None, True),
        (1, 40, 25680, 8, 32, None, False), (3, 5, 700, 2, 64, 7, True),
        (1, 9, 300, 1, 128, 64, False),
    ]:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(b, n, h * d, generator=g).to(dtype).cuda() for n in (i, s, s))
        m = torch.rand(b, i, s, generator=g).to(dtype).cuda()
        a = (torch.rand(h, generator=g) * 32).cuda()
        kpm = None
        if pad:
            kpm = (torch.rand(b, s, generator=g) < 0.5).cuda()
            kpm[0] = True
        out = sma_forward(q, k, v, m, a, h, kpm, num_splits=splits)
        want = reference(q.double(), k.double(), v.double(), m.double(), a.double(), h, kpm)
        err = ((out.double() - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
        results.append([str(dtype), b, i, s, h, d, splits, pad, err])
json.dump(results, sys.stdout)
"""

# GPU tolerances: fp32 dots run in IEEE fp32 (no tf32); p is rounded to the input dtype before p.v.
GPU_TOLERANCE = {"torch.float32": 1e-4, "torch.float16": 2e-3, "torch.bfloat16": 1e-2}


@pytest.mark.gpu
def test_jit_kernel_matches_reference_on_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, "-c", JIT_CHECK], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-4000:]
    for dtype, *shape, err in json.loads(run.stdout):
        assert err <= GPU_TOLERANCE[dtype], f"{dtype} {shape}: relative error {err:.3g}"


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
        path = launcher_ctypes.build_for_current_gpu(tmp_path_factory.mktemp("kbuild"))
    return launcher_ctypes.Launcher(launcher_ctypes.load(path))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    "b,i,s,h,d,splits,pad",
    [
        (1, 1, 5, 2, 16, 0, False),
        (2, 37, 1000, 8, 32, 0, True),
        (1, 40, 25680, 8, 32, 0, False),
        (3, 5, 700, 2, 64, 3, True),
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
