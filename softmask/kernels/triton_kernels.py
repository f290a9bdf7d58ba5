"""The fused soft-masked attention forward kernels (Triton): the single source of the kernel.

Contract: ``softmask/ops/reference.py`` (math and layout). Used three ways: JIT from
``softmask.kernels.launch`` (PyTorch), AOT-compiled to cubins by ``softmask.kernels.aot`` (the
TensorRT plugin through ``libsoftmask_kernels``), and on CPU under ``TRITON_INTERPRET=1`` (tests).

Two passes (Flash-Decoding):

1. ``sma_split_kernel``: grid (H * query_tiles, splits, B), the head fastest, so neighbouring
   programs read the same mask tile and the same keys through L2. Each program covers one
   (batch, query tile, head, key split) and writes an fp32 partial: row max ``m`` (log2 units),
   row sum ``l`` and the unnormalised accumulator ``acc`` [BLOCK_I, D].
2. ``sma_merge_kernel``: grid (H * query_tiles, B); rescales and sums the partials of all splits,
   divides, and writes the output [B, I, E]. Rows with no unpadded key (``l == 0``) give zeros.

Logits use the shift-invariant form ``q.k / sqrt(D) + alpha[h] * M`` in base 2:
``qk_scale_log2 = log2(e) / sqrt(D)`` and ``alpha[h] * log2(e)``, then ``exp2``.

Workspace layout (fp32), with P = B * H * splits * I:
    partial_acc [B, H, splits, I, D]  then  partial_ml [B, H, splits, I, 2] (max, sum)
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def sma_split_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    mask_ptr,
    alpha_ptr,
    kpm_ptr,
    acc_ptr,
    ml_ptr,
    num_queries,
    num_keys,
    num_heads,
    num_splits,
    tiles_per_split,
    has_padding,
    HEAD_DIM: tl.constexpr,
    BLOCK_I: tl.constexpr,
    BLOCK_S: tl.constexpr,
    QK_SCALE_LOG2: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_hq = tl.program_id(0)
    split = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    h = pid_hq % num_heads
    q_tile = pid_hq // num_heads
    embed = num_heads * HEAD_DIM

    offs_i = q_tile * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_i < num_queries

    q_ptrs = (
        q_ptr + b * num_queries * embed + offs_i[:, None] * embed + h * HEAD_DIM + offs_d[None, :]
    )
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
    alpha_log2 = tl.load(alpha_ptr + h).to(tl.float32) * 1.4426950408889634

    m_i = tl.full([BLOCK_I], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_I], tl.float32)
    acc = tl.zeros([BLOCK_I, HEAD_DIM], tl.float32)

    key_start = split * tiles_per_split * BLOCK_S
    key_end = tl.minimum(key_start + tiles_per_split * BLOCK_S, num_keys)
    kv_base = b * num_keys * embed + h * HEAD_DIM
    mask_base = b * num_queries * num_keys
    for start in range(key_start, key_end, BLOCK_S):
        offs_s = start + tl.arange(0, BLOCK_S)
        key_ok = offs_s < key_end
        if has_padding:
            padded = tl.load(kpm_ptr + b * num_keys + offs_s, mask=key_ok, other=1)
            key_ok = key_ok & (padded == 0)
        # Fully padded tiles cost one small load: no K, V or mask traffic.
        if tl.max(key_ok.to(tl.int32), axis=0) > 0:
            kt = tl.load(
                k_ptr + kv_base + offs_s[None, :] * embed + offs_d[:, None],
                mask=key_ok[None, :],
                other=0.0,
            )
            m_tile = tl.load(
                mask_ptr + mask_base + offs_i[:, None] * num_keys + offs_s[None, :],
                mask=row_ok[:, None] & key_ok[None, :],
                other=0.0,
            ).to(tl.float32)
            scores = tl.dot(q, kt, input_precision=DOT_PRECISION) * QK_SCALE_LOG2
            scores = scores + alpha_log2 * m_tile
            scores = tl.where(key_ok[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, axis=1))
            # A row with no valid key so far keeps m = -inf; shift by 0 to avoid inf - inf.
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(scores - m_shift[:, None])
            correction = tl.math.exp2(m_i - m_shift)
            v = tl.load(
                v_ptr + kv_base + offs_s[:, None] * embed + offs_d[None, :],
                mask=key_ok[:, None],
                other=0.0,
            )
            acc = acc * correction[:, None] + tl.dot(
                p.to(v.dtype), v, input_precision=DOT_PRECISION
            )
            l_i = l_i * correction + tl.sum(p, axis=1)
            m_i = m_new

    num_splits64 = num_splits.to(tl.int64)
    part_row = ((b * num_heads + h) * num_splits64 + split) * num_queries + offs_i
    tl.store(acc_ptr + part_row[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=row_ok[:, None])
    tl.store(ml_ptr + part_row * 2, m_i, mask=row_ok)
    tl.store(ml_ptr + part_row * 2 + 1, l_i, mask=row_ok)


@triton.jit
def sma_merge_kernel(
    acc_ptr,
    ml_ptr,
    out_ptr,
    num_queries,
    num_heads,
    num_splits,
    HEAD_DIM: tl.constexpr,
    BLOCK_I: tl.constexpr,
):
    pid_hq = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    h = pid_hq % num_heads
    q_tile = pid_hq // num_heads
    embed = num_heads * HEAD_DIM

    offs_i = q_tile * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_i < num_queries

    m_run = tl.full([BLOCK_I], float("-inf"), tl.float32)
    l_run = tl.zeros([BLOCK_I], tl.float32)
    acc = tl.zeros([BLOCK_I, HEAD_DIM], tl.float32)
    num_splits64 = num_splits.to(tl.int64)
    for split in range(num_splits):
        part_row = ((b * num_heads + h) * num_splits64 + split) * num_queries + offs_i
        m_s = tl.load(ml_ptr + part_row * 2, mask=row_ok, other=float("-inf"))
        l_s = tl.load(ml_ptr + part_row * 2 + 1, mask=row_ok, other=0.0)
        acc_s = tl.load(
            acc_ptr + part_row[:, None] * HEAD_DIM + offs_d[None, :],
            mask=row_ok[:, None],
            other=0.0,
        )
        m_new = tl.maximum(m_run, m_s)
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        scale_run = tl.math.exp2(m_run - m_shift)
        scale_s = tl.math.exp2(m_s - m_shift)
        acc = acc * scale_run[:, None] + acc_s * scale_s[:, None]
        l_run = l_run * scale_run + l_s * scale_s
        m_run = m_new

    # Rows whose keys are all padded have l == 0 and acc == 0: the contract's zeros.
    denom = tl.where(l_run > 0.0, l_run, 1.0)
    out = acc / denom[:, None]
    out_ptrs = (
        out_ptr + b * num_queries * embed + offs_i[:, None] * embed + h * HEAD_DIM + offs_d[None, :]
    )
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])
