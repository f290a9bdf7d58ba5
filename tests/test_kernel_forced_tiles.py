"""``sma_forward(..., tiles=...)``: forced launch shapes (the GPU configuration sweep's hook) give
the reference's result under the Triton interpreter, and unlaunchable ones are refused up front.

TRITON_INTERPRET=1 is set before any kernel import, as in ``test_kernel_interpreter.py``.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch

from softmask.errors import InputError
from softmask.kernels import heuristics
from softmask.ops.reference import soft_masked_attention as reference


@pytest.fixture(scope="module")
def sma_forward():
    from triton.runtime.interpreter import InterpretedFunction

    from softmask.kernels import sma_forward as fn
    from softmask.kernels import triton_kernels

    assert isinstance(triton_kernels.sma_split_kernel, InterpretedFunction), (
        "softmask.kernels.triton_kernels was imported before TRITON_INTERPRET=1 was set"
    )
    return fn


def _inputs(hard: bool):
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, n, 2 * 16, generator=g) for n in (20, 200, 200))
    m = torch.rand(1, 20, 200, generator=g)
    if hard:
        m = m < 0.2
        m[:, 0] = False  # an empty row: attends to every key
    return q, k, v, m, torch.rand(2, generator=g) * 8


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize(
    "tiles",
    [
        # Not what the heuristics pick for I = 20, S = 200 (BLOCK_I 32, BLOCK_S 128, 1 split):
        heuristics.KernelTiles(block_i=16, block_s=32, num_warps=1, num_stages=2, num_splits=3),
        heuristics.KernelTiles(block_i=64, block_s=64, num_warps=8, num_stages=3, num_splits=1),
        heuristics.KernelTiles(block_i=32, block_s=16, num_warps=2, num_stages=1, num_splits=13),
    ],
)
def test_forced_tiles_match_the_reference(sma_forward, tiles, hard):
    q, k, v, m, a = _inputs(hard)
    out = sma_forward(q, k, v, m, a, 2, hard=hard, tiles=tiles)
    want = reference(q.double(), k.double(), v.double(), m if hard else m.double(), a.double(), 2,
                     hard=hard)
    err = ((out.double() - want).abs().max() / want.abs().max()).item()
    assert err < 1e-5, f"{tiles}: relative error {err:.3g}"


@pytest.mark.parametrize(
    "field,value",
    [("block_i", 24), ("block_i", 8), ("block_s", 1024), ("num_warps", 3), ("num_stages", 0),
     ("num_splits", heuristics.MAX_SPLITS + 1)],
)
def test_unlaunchable_tiles_are_refused(sma_forward, field, value):
    good = {"block_i": 32, "block_s": 64, "num_warps": 2, "num_stages": 2, "num_splits": 1}
    tiles = heuristics.KernelTiles(**{**good, field: value})
    q, k, v, m, a = _inputs(False)
    with pytest.raises(InputError, match="block_i must be a power of two"):
        sma_forward(q, k, v, m, a, 2, tiles=tiles)
