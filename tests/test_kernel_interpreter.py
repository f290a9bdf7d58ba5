"""The fused Triton kernel on CPU under Triton's interpreter, against the float64 reference.

Triton decides interpret-or-compile when a kernel is decorated, i.e. when
``softmask.kernels.triton_kernels`` is first imported; ``softmask.kernels`` imports it lazily (on
the first ``sma_forward`` call) and ``softmask.ops`` never does, so setting TRITON_INTERPRET=1 here,
before any kernel import, is enough even when other test modules ran first. If the kernels were
compiled-mode already, the fixture fails loudly instead of silently testing nothing.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch

from softmask.errors import InputError
from softmask.kernels import heuristics
from softmask.ops.reference import soft_masked_attention as reference

# bf16 keeps 8 mantissa bits: p is rounded to bf16 before p.v (as on the tensor cores), 2**-9
# relative per weight, which reaches ~1e-2 of the output's scale on these random inputs.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.fixture(scope="module")
def sma_forward():
    from triton.runtime.interpreter import InterpretedFunction

    from softmask.kernels import sma_forward as fn
    from softmask.kernels import triton_kernels

    assert isinstance(triton_kernels.sma_split_kernel, InterpretedFunction), (
        "softmask.kernels.triton_kernels was imported before TRITON_INTERPRET=1 was set"
    )
    return fn


def _inputs(batch, queries, keys, heads, head_dim, dtype, seed=0, alpha_max=16.0, binary=False):
    g = torch.Generator().manual_seed(seed)
    embed = heads * head_dim
    q = torch.randn(batch, queries, embed, generator=g).to(dtype)
    k = torch.randn(batch, keys, embed, generator=g).to(dtype)
    v = torch.randn(batch, keys, embed, generator=g).to(dtype)
    m = torch.rand(batch, queries, keys, generator=g)
    if binary:
        m = (m > 0.5).float()
    alpha = torch.rand(heads, generator=g) * alpha_max
    return q, k, v, m.to(dtype), alpha


def _check(sma_forward, q, k, v, m, alpha, heads, kpm=None, num_splits=None):
    got = sma_forward(q, k, v, m, alpha, heads, kpm, num_splits=num_splits)
    want = reference(q.double(), k.double(), v.double(), m.double(), alpha.double(), heads, kpm)
    assert got.dtype == q.dtype and got.shape == q.shape
    scale = max(want.abs().max().item(), 1e-6)
    err = (got.double() - want).abs().max().item() / scale
    assert err <= TOLERANCE[q.dtype], f"relative error {err:.3g} > {TOLERANCE[q.dtype]}"
    return got, want


# (B, I, S, H, D, forced splits) and the tiles the JIT path picks for them at fp16/bf16 (fp32
# halves BLOCK_S): every BLOCK_I, the
# aligned (S % 16 == 0) and element-wise mask paths, tail tiles, empty splits, both merge levels.
CASES = [
    ((1, 1, 5, 2, 16, None), 16, 64),  # S below one tile (only the peeled tail), I = 1
    ((2, 37, 300, 2, 32, None), 64, 64),  # S % 16 != 0, one partial query tile of 64
    ((1, 20, 520, 1, 32, 3), 32, 64),  # uneven splits, a tail tile
    ((1, 9, 640, 2, 32, None), 16, 128),  # aligned S, no tail, heuristic splits
    ((1, 5, 256, 1, 64, 1), 16, 64),  # single split: the program writes the output itself
    ((1, 3, 200, 1, 128, 9), 64, 32),  # more splits than key tiles (7): empty splits
    ((1, 24, 384, 1, 32, 11), 32, 128),  # two merge levels (groups of 8); 8 of 11 splits empty
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[0])))
def test_matches_reference(sma_forward, dtype, case):
    (batch, queries, keys, heads, head_dim, splits), block_i, block_s = case
    q, k, v, m, alpha = _inputs(batch, queries, keys, heads, head_dim, dtype)
    elem = q.element_size()
    tiles = heuristics.kernel_tiles(batch, heads, queries, keys, head_dim, 132, 90, elem, elem)
    assert (tiles.block_i, tiles.block_s) == (block_i, block_s * 2 // elem)
    _check(sma_forward, q, k, v, m, alpha, heads, num_splits=splits)


def test_cases_cover_every_query_tile_and_both_mask_paths():
    assert {c[1] for c in CASES} == set(heuristics.BLOCK_IS)
    assert {heuristics.keys_aligned(c[0][2]) for c in CASES} == {True, False}


@pytest.mark.parametrize("dtype,keys,splits", [(torch.float32, 700, 5), (torch.bfloat16, 640, 10)])
def test_key_padding_fully_padded_rows_and_splits(sma_forward, dtype, keys, splits):
    q, k, v, m, alpha = _inputs(3, 4, keys, 2, 32, dtype)
    kpm = torch.zeros(3, keys, dtype=torch.bool)
    kpm[0] = True  # batch 0: every key padded -> zeros
    kpm[1, :520] = True  # batch 1: the first splits hold only padded keys
    kpm[2, ::3] = True  # batch 2: scattered padding
    got, _ = _check(sma_forward, q, k, v, m, alpha, 2, kpm=kpm, num_splits=splits)
    assert torch.equal(got[0], torch.zeros_like(got[0]))


def test_large_alpha_with_binary_mask(sma_forward):
    q, k, v, m, alpha = _inputs(1, 9, 260, 2, 32, torch.float16, binary=True)
    alpha = torch.tensor([64.0, 0.5])
    _check(sma_forward, q, k, v, m, alpha, 2, num_splits=2)


def test_mask_dtype_may_differ_from_query(sma_forward):
    q, k, v, m, alpha = _inputs(1, 4, 130, 2, 16, torch.float16)
    _check(sma_forward, q, k, v, m.float(), alpha.half(), 2)


def test_padded_rows_are_zero_in_every_dtype(sma_forward):
    q, k, v, m, alpha = _inputs(1, 2, 40, 1, 16, torch.float16)
    kpm = torch.ones(1, 40, dtype=torch.bool)
    out = sma_forward(q, k, v, m, alpha, 1, kpm)
    assert torch.equal(out, torch.zeros_like(out))


def test_unsupported_head_dim_is_an_input_error(sma_forward):
    q, k, v, m, alpha = _inputs(1, 2, 8, 2, 24, torch.float32)
    with pytest.raises(InputError, match="head dim"):
        sma_forward(q, k, v, m, alpha, 2)


def test_bad_num_splits_is_an_input_error(sma_forward):
    q, k, v, m, alpha = _inputs(1, 2, 8, 1, 16, torch.float32)
    with pytest.raises(InputError, match="num_splits"):
        sma_forward(q, k, v, m, alpha, 1, num_splits=0)


def test_shape_errors_come_from_check_inputs(sma_forward):
    q, k, v, m, alpha = _inputs(1, 2, 8, 1, 16, torch.float32)
    with pytest.raises(InputError, match="mask"):
        sma_forward(q, k, v, m[:, :, :4], alpha, 1)


def test_heuristic_split_count_used_when_none(sma_forward):
    """num_splits=None follows the heuristic: forcing the heuristic's own value changes nothing."""
    q, k, v, m, alpha = _inputs(1, 3, 900, 1, 16, torch.float32)
    chosen = heuristics.kernel_tiles(1, 1, 3, 900, 16, 132, 90, 4, 4).num_splits
    assert chosen > 1
    auto = sma_forward(q, k, v, m, alpha, 1)
    forced = sma_forward(q, k, v, m, alpha, 1, num_splits=chosen)
    assert torch.equal(auto, forced)


def test_unsupported_reason_names_float64_and_head_dim(sma_forward):
    from softmask.kernels import unsupported_reason

    q, _k, _v, m, _alpha = _inputs(1, 2, 8, 2, 16, torch.float32)
    assert unsupported_reason(q, m, 2) is None
    assert "float64" in unsupported_reason(q.double(), m, 2)
    assert "float64" in unsupported_reason(q, m.double(), 2)
    assert "head dim" in unsupported_reason(q, m, 4)  # D = 8


# Hard mode (Mask2Former's masked attention): bool mask, blocked keys -inf, a row with no allowed
# unpadded key attends to every unpadded key. The kernel decides the empty-row rule per split
# (all-keys state until a row's first allowed key) and in the merge (masked partials win), so
# the masks below place a row's allowed keys where each of those paths runs.
HARD_CASES = [
    ((1, 1, 5, 2, 16, None), 16),  # S below one tile (only the peeled tail), I = 1
    ((2, 37, 300, 2, 32, None), 64),  # S % 16 != 0, heuristic splits, a partial query tile
    ((1, 20, 520, 1, 32, 3), 32),  # uneven splits, a tail tile
    ((1, 3, 200, 1, 128, 9), 64),  # more splits than key tiles: empty splits
    # Two merge levels with keys in both groups (9 tiles of 128 at 16 bits, 18 of 64 at fp32): a
    # row allowed only the last key has all-keys partials in group 0 and a masked one in group 1.
    ((1, 24, 1152, 1, 32, 11), 32),
    ((1, 9, 640, 2, 32, 1), 16),  # aligned S, one split: the program writes the output itself
]


def _hard_mask(batch: int, queries: int, keys: int, seed: int = 0) -> torch.Tensor:
    """bool [B, I, S], True = attend: random rows of several densities plus the rows where the
    empty-row rule and the per-split reset matter (see the comments)."""
    g = torch.Generator().manual_seed(seed + 1)
    density = torch.tensor([0.5, 0.1, 0.01, 0.9])[torch.arange(queries) % 4]
    mask = torch.rand(batch, queries, keys, generator=g) < density[None, :, None]
    special = [
        torch.zeros(keys, dtype=torch.bool),  # every key blocked: attends to all keys
        torch.arange(keys) == keys - 1,  # only the last key (the peeled tail, the last split)
        torch.arange(keys) >= keys // 2 + 1,  # blocked first half: earlier splits drop out
        torch.arange(keys) == keys // 3,  # one key mid-sequence: reset inside a split
    ]
    for row, allowed in enumerate(special[:queries]):
        mask[:, row] = allowed
    return mask


def _check_hard(sma_forward, q, k, v, mask, heads, kpm=None, num_splits=None):
    alpha = torch.full((heads,), float("nan"))  # hard mode must not read it
    got = sma_forward(q, k, v, mask, alpha, heads, kpm, num_splits=num_splits, hard=True)
    want = reference(
        q.double(), k.double(), v.double(), mask, alpha.double(), heads, kpm, hard=True
    )
    assert got.dtype == q.dtype and got.shape == q.shape
    scale = max(want.abs().max().item(), 1e-6)
    err = (got.double() - want).abs().max().item() / scale
    assert err <= TOLERANCE[q.dtype], f"relative error {err:.3g} > {TOLERANCE[q.dtype]}"
    return got, want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", HARD_CASES, ids=lambda c: "-".join(map(str, c[0])))
def test_hard_mode_matches_reference(sma_forward, dtype, case):
    (batch, queries, keys, heads, head_dim, splits), block_i = case
    q, k, v, _m, _alpha = _inputs(batch, queries, keys, heads, head_dim, dtype)
    tiles = heuristics.kernel_tiles(
        batch, heads, queries, keys, head_dim, 132, 90, q.element_size(), 1
    )
    assert tiles.block_i == block_i
    _check_hard(sma_forward, q, k, v, _hard_mask(batch, queries, keys), heads, num_splits=splits)


def test_hard_cases_cover_every_query_tile_both_mask_paths_and_merge_levels():
    assert {c[1] for c in HARD_CASES} == set(heuristics.BLOCK_IS)
    assert {heuristics.keys_aligned(c[0][2]) for c in HARD_CASES} == {True, False}
    forced = {c[0][5] for c in HARD_CASES}
    assert 1 in forced and any(s and s > 8 for s in forced)


@pytest.mark.parametrize(
    "dtype,keys,splits",
    [(torch.float32, 700, 5), (torch.float16, 300, 1), (torch.bfloat16, 640, 10)],
)
def test_hard_mode_key_padding(sma_forward, dtype, keys, splits):
    q, k, v, _m, _alpha = _inputs(3, 6, keys, 2, 32, dtype)
    mask = _hard_mask(3, 6, keys)
    kpm = torch.zeros(3, keys, dtype=torch.bool)
    kpm[0] = True  # batch 0: every key padded -> zeros
    kpm[1, : keys // 2 + 1] = True  # batch 1: the first splits hold only padded keys
    kpm[2, ::3] = True  # batch 2: scattered padding
    # Batch 2, row 4: its only allowed keys are padded, so it attends to every unpadded key.
    mask[2, 4] = kpm[2]
    got, _ = _check_hard(sma_forward, q, k, v, mask, 2, kpm=kpm, num_splits=splits)
    assert torch.equal(got[0], torch.zeros_like(got[0]))


def test_hard_mode_blocked_rows_attend_to_every_key(sma_forward):
    """An all-blocked row equals plain softmax attention (soft mode with alpha 0), not zeros (SDPA)
    nor the mean of V (ONNX Runtime's CUDA path)."""
    q, k, v, _m, _alpha = _inputs(1, 5, 520, 2, 32, torch.float32)
    mask = torch.zeros(1, 5, 520, dtype=torch.bool)
    mask[0, 1, 7] = True  # one row with a single allowed key: exactly that key's value
    got = sma_forward(q, k, v, mask, torch.zeros(2), 2, num_splits=4, hard=True)
    plain = reference(
        q.double(),
        k.double(),
        v.double(),
        torch.ones(1, 5, 520, dtype=torch.float64),
        torch.zeros(2, dtype=torch.float64),
        2,
    )
    rows = [0, 2, 3, 4]
    assert (got[:, rows].double() - plain[:, rows]).abs().max().item() <= 1e-5
    assert torch.allclose(got[0, 1], v[0, 7], atol=1e-6)


def test_hard_mode_wants_a_bool_mask(sma_forward):
    q, k, v, m, alpha = _inputs(1, 2, 8, 1, 16, torch.float32)
    with pytest.raises(InputError, match="hard mode: mask must be bool"):
        sma_forward(q, k, v, m, alpha, 1, hard=True)


def test_bool_mask_without_hard_mode_is_an_input_error(sma_forward):
    q, k, v, m, alpha = _inputs(1, 2, 8, 1, 16, torch.float32)
    with pytest.raises(InputError, match="hard mode"):
        sma_forward(q, k, v, m > 0.5, alpha, 1)


def test_custom_op_cuda_dispatch_runs_the_kernel_in_hard_mode(sma_forward, monkeypatch):
    """The op's CUDA implementation (called directly: CPU tensors run it under the interpreter)
    hands hard mode to the fused kernel instead of the reference math."""
    from softmask import kernels
    from softmask.ops import custom_op

    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("hard"))
        return sma_forward(*args, **kwargs)

    monkeypatch.setattr(kernels, "sma_forward", counted)
    q, k, v, _m, alpha = _inputs(1, 4, 130, 2, 16, torch.float16)
    mask = _hard_mask(1, 4, 130)
    got = custom_op._cuda(q, k, v, mask, alpha, 2, None, True)
    want = reference(q.double(), k.double(), v.double(), mask, alpha.double(), 2, hard=True)
    assert calls == [True]
    assert (got.double() - want).abs().max().item() <= TOLERANCE[torch.float16] * want.abs().max()
