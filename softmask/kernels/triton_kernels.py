"""The fused soft-masked attention forward kernel (Triton): the single source of the kernel.

Contract: ``softmask/ops/reference.py`` (math and layout). Used three ways: JIT from
``softmask.kernels.launch`` (PyTorch), AOT-compiled to cubins by ``softmask.kernels.aot`` (the
TensorRT plugin through ``libsoftmask_kernels``), and on CPU under ``TRITON_INTERPRET=1`` (tests).

One launch, grid ``(H * query_tiles, splits, B)`` with the head fastest, so the H programs of one
(batch, query tile, key split) run side by side and read the same mask tile and key range through
L2. Each program covers one (batch, query tile, head, key split) (Flash-Decoding):

1. the main loop over the split's full key tiles: no masks, no data-dependent branch, software
   pipelined (``num_stages`` at launch) so K, V and M stream through shared memory with
   asynchronous copies; the tile holding the last key (``S % BLOCK_S != 0``) is peeled after it;
2. with ``num_splits == 1`` the program normalises and writes the output itself; otherwise it
   writes an fp32 partial (row max ``m`` in log2 units, row sum ``l``, unnormalised ``acc``) and
   counts itself done on an atomic counter. The last program of each group of ``MERGE_GROUP``
   consecutive splits merges the group's partials into the group's first slot, and the last group
   to finish merges the group results and writes [B, I, E]: two short merge levels instead of one
   long serial one, and no second launch. Rows with no unpadded key (``l == 0``) give zeros.

Logits use the shift-invariant form ``q.k / sqrt(D) + alpha[h] * M`` in base 2 without ever
rescaling q (so q is not re-rounded to fp16/bf16): scores stay in q.k units, alpha is multiplied
by ``log2(e) / QK_SCALE_LOG2`` once per program, each score is one FMA ``fma(M, alpha', q.k)``,
the row max is kept in log2 units (``max * QK_SCALE_LOG2``) and ``QK_SCALE_LOG2 = log2(e) /
sqrt(D)`` is applied inside the exp2 argument's FMA, ``exp2(fma(s, QK_SCALE_LOG2, -m))``.

Hard mode (``HARD``, Mask2Former's masked attention): the mask is read as one byte per key
(nonzero = attend), alpha is not read, blocked keys get -inf, and a row with no allowed unpadded
key attends to every unpadded key. No second pass over K/V and no second softmax state: each
split keeps, per row, the all-keys state until the row's first allowed key in that split, then
the masked one (``_attend_tile``); the sign of the partial's l says which (``_store_partial``),
and the merge keeps the masked partials of a row when it has any, else its all-keys ones.

Compile-time variants: ``HARD``, ``PADDING`` (the variant reads a key padding mask when
``has_padding`` is nonzero; without it there is no per-key test at all), ``BLOCK_I`` in
{16, 32, 64} with one warp per 16 query rows, ``BLOCK_S``, ``HEAD_DIM``; Triton's own
specialisation (JIT) or an explicit divisibility hint (AOT) of ``num_keys`` by 16 makes mask rows
16-byte aligned (vector loads).
Query rows past I are clamped to row I - 1 on load (in bounds, no predicate) and dropped at the
store. ``DOT_IN_FP32`` exists for the interpreter only (its ``tl.dot`` cannot multiply bf16).

Workspace (fp32 partials; only read when ``num_splits > 1``):
    partial_acc [B, H, splits, I, D], partial_ml [B, H, splits, I, 2] (max, sum),
    counters int32 [B, H, query_tiles, MAX_MERGE_GROUPS + 1], zero at launch (the launchers clear
    them; the merging programs reset them too, so they stay zero after a completed launch).
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
MERGE_GROUP = tl.constexpr(8)  # splits merged by one program at the first merge level
MAX_MERGE_GROUPS = tl.constexpr(16)  # MAX_SPLITS (heuristics) / MERGE_GROUP


@triton.jit
def _attend_tile(
    acc,
    m_i,
    l_i,
    seen,
    q,
    k_tile_ptr,
    v_tile_ptr,
    mask_tile_ptr,
    kpm_tile_ptr,
    has_padding,
    alpha_scaled,
    offs_s,
    offs_d,
    offs_i_load,
    keys_left,
    mask_stride,
    embed,
    KEY_BOUND: tl.constexpr,
    PADDING: tl.constexpr,
    HARD: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,
    QK_SCALE_LOG2: tl.constexpr,
):
    """One key tile of the online softmax; pointers point at the tile's first key.

    Returns the updated ``(acc, m_i, l_i, seen)``. ``HARD``: the mask is one byte per key (nonzero
    = allowed) and ``seen`` [BLOCK_I] int32 says whether the row met an allowed key earlier in this
    split. Until it does, the row's state is the softmax over every (unpadded) key; the tile where
    it meets its first allowed key drops that state (``m_i`` -> -inf: correction 0) and from there
    on blocked keys get -inf. So one state, one exp per score and one p.v per tile serve both
    Mask2Former cases: a split whose row is ``seen`` holds the masked partial, one whose row is
    not holds the all-keys partial, and the merge keeps the ones the row's total calls for.
    Soft mode passes ``seen`` through untouched.

    ``KEY_BOUND``: the tile may hold fewer than BLOCK_S keys (``keys_left``; the peeled last tile):
    loads are masked and the missing keys get -inf. ``PADDING``: the variant reads the key padding
    mask when ``has_padding`` is nonzero. Without either, nothing
    is masked. ``mask_stride``: elements between mask rows (S). ``DOT_IN_FP32``: multiply the
    (already rounded) dot operands in fp32; only for Triton's interpreter, whose ``tl.dot``
    cannot multiply bf16.
    """
    kt_ptrs = k_tile_ptr + offs_s[None, :] * embed + offs_d[:, None]
    v_ptrs = v_tile_ptr + offs_s[:, None] * embed + offs_d[None, :]
    m_ptrs = mask_tile_ptr + offs_i_load[:, None] * mask_stride + offs_s[None, :]
    if KEY_BOUND:
        key_ok = offs_s < keys_left
        kt = tl.load(kt_ptrs, mask=key_ok[None, :], other=0.0)
        m_tile = tl.load(m_ptrs, mask=key_ok[None, :], other=0.0)
        v = tl.load(v_ptrs, mask=key_ok[:, None], other=0.0)
    else:
        kt = tl.load(kt_ptrs)
        m_tile = tl.load(m_ptrs)
        v = tl.load(v_ptrs)
    if DOT_IN_FP32:
        scores = tl.dot(q.to(tl.float32), kt.to(tl.float32), input_precision="ieee")
    else:
        scores = tl.dot(q, kt, input_precision=DOT_PRECISION)
    if PADDING:
        # Without a padding mask (has_padding == 0) the launcher passes any readable pointer and
        # the bytes read are ignored: one unpredicated byte load per key, no branch.
        if KEY_BOUND:
            padded = tl.load(kpm_tile_ptr + offs_s, mask=key_ok, other=0)
        else:
            padded = tl.load(kpm_tile_ptr + offs_s)
        key_ok = (padded == 0) | (has_padding == 0)
        if KEY_BOUND:
            key_ok = key_ok & (offs_s < keys_left)
    if HARD:
        if PADDING or KEY_BOUND:
            scores = tl.where(key_ok[None, :], scores, float("-inf"))
        # Float selects and row maxima only (no reduction over the mask bytes themselves): the
        # row met an allowed key in this tile iff its masked max is finite.
        masked = tl.where(m_tile != 0, scores, float("-inf"))
        seen_new = tl.maximum(seen, (tl.max(masked, axis=1) > float("-inf")).to(tl.int32))
        # The first allowed key of this split: the all-keys state so far is dropped.
        m_i = tl.where(seen_new > seen, float("-inf"), m_i)
        scores = tl.where(seen_new[:, None] > 0, masked, scores)
        seen = seen_new
    else:
        scores = tl.fma(m_tile.to(tl.float32), alpha_scaled, scores)
        if PADDING or KEY_BOUND:
            scores = tl.where(key_ok[None, :], scores, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, axis=1) * QK_SCALE_LOG2)
    if PADDING:
        # A row whose keys so far are all padded keeps m = -inf: shift by 0, not by -inf.
        m_new_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        # Every tile has a valid key, so m_new is finite from the first tile on.
        m_new_shift = m_new
    p = tl.math.exp2(tl.fma(scores, QK_SCALE_LOG2, -m_new_shift[:, None]))
    correction = tl.math.exp2(m_i - m_new_shift)
    l_i = l_i * correction + tl.sum(p, axis=1)
    p = p.to(v.dtype)  # rounded to the input dtype before p.v, as on the tensor cores
    if DOT_IN_FP32:
        pv = tl.dot(p.to(tl.float32), v.to(tl.float32), input_precision="ieee")
    else:
        pv = tl.dot(p, v, input_precision=DOT_PRECISION)
    acc = acc * correction[:, None] + pv
    return acc, m_new, l_i, seen


@triton.jit
def _merge_partials(
    acc_ptr,
    ml_ptr,
    first_row,
    row_stride,
    count,
    offs_i,
    offs_d,
    row_ok,
    HEAD_DIM: tl.constexpr,
    BLOCK_I: tl.constexpr,
    CHUNK: tl.constexpr,
    HARD: tl.constexpr,
):
    """Combine ``count`` partials whose rows start at ``first_row + j * row_stride`` (j < count).

    Returns the merged (acc, m, l, seen). Loads bypass L1 (``.cg``): other programs wrote the
    partials during this launch. ``CHUNK`` partials are unrolled per step so their loads are in
    flight together. ``HARD``: a row's partials that met an allowed key (``_store_partial``'s
    sign of l) win over the all-keys ones, which count only when no partial of the row met one;
    done in the same single pass (the first winning partial drops the running state).
    """
    m_run = tl.full([BLOCK_I], float("-inf"), tl.float32)
    l_run = tl.zeros([BLOCK_I], tl.float32)
    acc = tl.zeros([BLOCK_I, HEAD_DIM], tl.float32)
    seen_run = tl.zeros([BLOCK_I], tl.int32)
    for start in range(0, count, CHUNK):
        for j in tl.static_range(CHUNK):
            item = start + j
            ok = row_ok & (tl.full([BLOCK_I], item, tl.int32) < count)
            rows = first_row + item * row_stride + offs_i
            m_j = tl.load(ml_ptr + rows * 2, mask=ok, other=float("-inf"), cache_modifier=".cg")
            l_j = tl.load(ml_ptr + rows * 2 + 1, mask=ok, other=0.0, cache_modifier=".cg")
            a_j = tl.load(
                acc_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :],
                mask=ok[:, None],
                other=0.0,
                cache_modifier=".cg",
            )
            if HARD:
                seen_j = (l_j > 0.0).to(tl.int32)
                l_j = tl.abs(l_j)
                m_run = tl.where(seen_j > seen_run, float("-inf"), m_run)
                m_j = tl.where(seen_run > seen_j, float("-inf"), m_j)
                seen_run = tl.maximum(seen_run, seen_j)
            m_new = tl.maximum(m_run, m_j)
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            scale_run = tl.math.exp2(m_run - m_shift)
            scale_j = tl.math.exp2(m_j - m_shift)
            acc = acc * scale_run[:, None] + a_j * scale_j[:, None]
            l_run = l_run * scale_run + l_j * scale_j
            m_run = m_new
    return acc, m_run, l_run, seen_run


@triton.jit
def _store_partial(
    acc_ptr,
    ml_ptr,
    rows,
    acc,
    m_i,
    l_i,
    seen,
    offs_d,
    row_ok,
    HEAD_DIM: tl.constexpr,
    HARD: tl.constexpr,
):
    """Write one partial. ``HARD``: l's sign carries ``seen`` (l > 0: the partial met an allowed
    key, whose own weight keeps l at about 1 or more; else -l <= 0, 0 when it met no unpadded key
    at all)."""
    if HARD:
        l_i = tl.where(seen > 0, l_i, -l_i)
    tl.store(acc_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=row_ok[:, None])
    tl.store(ml_ptr + rows * 2, m_i, mask=row_ok)
    tl.store(ml_ptr + rows * 2 + 1, l_i, mask=row_ok)


@triton.jit
def sma_split_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    mask_ptr,
    alpha_ptr,
    kpm_ptr,
    out_ptr,
    acc_ptr,
    ml_ptr,
    counter_ptr,
    num_queries,
    num_keys,
    num_heads,
    num_splits,
    has_padding,
    HEAD_DIM: tl.constexpr,
    BLOCK_I: tl.constexpr,
    BLOCK_S: tl.constexpr,
    QK_SCALE_LOG2: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    PADDING: tl.constexpr,
    DOT_IN_FP32: tl.constexpr = False,
    HARD: tl.constexpr = False,
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
    # Rows past I read row I - 1 (in bounds, no predicate on the loads); their results are dropped.
    offs_i_load = tl.minimum(offs_i, num_queries - 1)

    q_rows = q_ptr + b * num_queries * embed + h * HEAD_DIM
    q = tl.load(q_rows + offs_i_load[:, None] * embed + offs_d[None, :])
    # Scores stay in q.k units (q is not rescaled, so not re-rounded): alpha * log2(e) is divided
    # by the scale once, and the scale is applied inside the exp2 argument's FMA.
    log2e: tl.constexpr = 1.4426950408889634
    alpha_scaled = tl.load(alpha_ptr + h).to(tl.float32) * (log2e / QK_SCALE_LOG2)

    # Balanced split of the key tiles: split s gets tiles [first, first + count), counts differ
    # by at most one between splits.
    num_tiles = tl.cdiv(num_keys, BLOCK_S)
    per_split = num_tiles // num_splits
    extra = num_tiles % num_splits
    tile_first = split * per_split + tl.minimum(split, extra)
    tile_end = tile_first + per_split + (split < extra).to(tl.int32)
    full_tiles = num_keys // BLOCK_S  # the tile past them, if any, is cut by S % BLOCK_S
    full_end = tl.minimum(tile_end, full_tiles)

    k_base = k_ptr + b * num_keys * embed + h * HEAD_DIM
    v_base = v_ptr + b * num_keys * embed + h * HEAD_DIM
    mask_base = mask_ptr + b * num_queries * num_keys
    kpm_base = kpm_ptr + b * num_keys
    offs_s = tl.arange(0, BLOCK_S)

    m_i = tl.full([BLOCK_I], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_I], tl.float32)
    acc = tl.zeros([BLOCK_I, HEAD_DIM], tl.float32)
    seen = tl.zeros([BLOCK_I], tl.int32)
    for tile in range(tile_first, full_end):
        key0 = tile * BLOCK_S
        acc, m_i, l_i, seen = _attend_tile(
            acc,
            m_i,
            l_i,
            seen,
            q,
            k_base + key0 * embed,
            v_base + key0 * embed,
            mask_base + key0,
            kpm_base + key0,
            has_padding,
            alpha_scaled,
            offs_s,
            offs_d,
            offs_i_load,
            num_keys - key0,
            num_keys,
            embed,
            KEY_BOUND=False,
            PADDING=PADDING,
            HARD=HARD,
            DOT_PRECISION=DOT_PRECISION,
            DOT_IN_FP32=DOT_IN_FP32,
            QK_SCALE_LOG2=QK_SCALE_LOG2,
        )
    if (tile_first <= full_tiles) & (full_tiles < tile_end):
        # This split holds the last tile, cut by S % BLOCK_S != 0.
        key0 = full_end * BLOCK_S
        acc, m_i, l_i, seen = _attend_tile(
            acc,
            m_i,
            l_i,
            seen,
            q,
            k_base + key0 * embed,
            v_base + key0 * embed,
            mask_base + key0,
            kpm_base + key0,
            has_padding,
            alpha_scaled,
            offs_s,
            offs_d,
            offs_i_load,
            num_keys - key0,
            num_keys,
            embed,
            KEY_BOUND=True,
            PADDING=PADDING,
            HARD=HARD,
            DOT_PRECISION=DOT_PRECISION,
            DOT_IN_FP32=DOT_IN_FP32,
            QK_SCALE_LOG2=QK_SCALE_LOG2,
        )

    out_rows = out_ptr + b * num_queries * embed + h * HEAD_DIM
    out_ptrs = out_rows + offs_i[:, None] * embed + offs_d[None, :]
    out_dtype = out_ptr.dtype.element_ty
    if num_splits == 1:
        # Rows whose keys are all padded have l == 0 and acc == 0: the contract's zeros.
        denom = tl.where(l_i > 0.0, l_i, 1.0)
        tl.store(out_ptrs, (acc / denom[:, None]).to(out_dtype), mask=row_ok[:, None])
    else:
        head_row0 = (b * num_heads + h) * num_splits * num_queries
        _store_partial(
            acc_ptr,
            ml_ptr,
            head_row0 + split * num_queries + offs_i,
            acc,
            m_i,
            l_i,
            seen,
            offs_d,
            row_ok,
            HEAD_DIM,
            HARD,
        )
        # Partials merged per unrolled step: their loads are in flight together; D / 2 floats
        # per thread each, so 8 of them fit the registers up to D = 32.
        MERGE_CHUNK: tl.constexpr = 8 if HEAD_DIM <= 32 else 256 // HEAD_DIM
        num_groups = tl.cdiv(num_splits, MERGE_GROUP)
        group = split // MERGE_GROUP
        group_first = group * MERGE_GROUP
        group_size = tl.minimum(num_splits - group_first, MERGE_GROUP)
        counters = counter_ptr + ((b * num_heads + h) * tl.cdiv(num_queries, BLOCK_I) + q_tile) * (
            MAX_MERGE_GROUPS + 1
        )
        # Every thread's partial stores happen before the (single-thread) release of the count.
        tl.debug_barrier()
        done = tl.atomic_add(counters + group, 1, sem="acq_rel", scope="gpu")
        if done == group_size - 1:
            acc, m_i, l_i, seen = _merge_partials(
                acc_ptr,
                ml_ptr,
                head_row0 + group_first * num_queries,
                num_queries,
                group_size,
                offs_i,
                offs_d,
                row_ok,
                HEAD_DIM,
                BLOCK_I,
                MERGE_CHUNK,
                HARD,
            )
            tl.atomic_xchg(counters + group, 0, sem="relaxed", scope="gpu")
            if num_groups == 1:
                denom = tl.where(l_i > 0.0, l_i, 1.0)
                tl.store(out_ptrs, (acc / denom[:, None]).to(out_dtype), mask=row_ok[:, None])
            else:
                _store_partial(
                    acc_ptr,
                    ml_ptr,
                    head_row0 + group_first * num_queries + offs_i,
                    acc,
                    m_i,
                    l_i,
                    seen,
                    offs_d,
                    row_ok,
                    HEAD_DIM,
                    HARD,
                )
                tl.debug_barrier()
                final = counters + MAX_MERGE_GROUPS
                groups_done = tl.atomic_add(final, 1, sem="acq_rel", scope="gpu")
                if groups_done == num_groups - 1:
                    acc, m_i, l_i, seen = _merge_partials(
                        acc_ptr,
                        ml_ptr,
                        head_row0,
                        MERGE_GROUP * num_queries,
                        num_groups,
                        offs_i,
                        offs_d,
                        row_ok,
                        HEAD_DIM,
                        BLOCK_I,
                        MERGE_CHUNK,
                        HARD,
                    )
                    tl.atomic_xchg(final, 0, sem="relaxed", scope="gpu")
                    denom = tl.where(l_i > 0.0, l_i, 1.0)
                    tl.store(out_ptrs, (acc / denom[:, None]).to(out_dtype), mask=row_ok[:, None])
