"""Tile sizes, warps, pipeline depth and split count of the fused kernel: pure functions.

The C launcher (``plugins/softmaskKernels/softmask_heuristics.cpp``) implements the same tile and
split rules; ``tests/test_kernel_heuristics.py`` checks both agree. Change them together. The
reasons behind the numbers (static SASS counts per variant) are in ``docs/kernels.md``.

Rules:
- query tile ``BLOCK_I``: the smallest of 16, 32, 64 that holds I (one warp per 16 query rows, so
  a warp owns whole rows and row max/sum never cross warps); 64 for D = 128 (register budget);
- key tile ``BLOCK_S``: 128 for D <= 32, 64 for D = 64, 32 for D = 128; when S is not a multiple
  of ``KEY_ALIGN`` the mask rows are not 16-byte aligned, its loads become element-wise and
  ``BLOCK_S`` drops to 64 for D <= 32 (their addresses would otherwise spill); halved for fp32
  inputs (twice the bytes per tile, three tensor-core passes per product);
- pipeline depth ``num_stages``: 3 when three stages of K, V and M tiles fit the shared-memory
  share of one CTA at the targeted CTAs per SM, else 2; 1 on Turing (no asynchronous copies);
- splits: at least enough to give every SM ``ctas_per_sm`` programs (>= 2 CTAs and >= 8 warps
  per SM), and among counts from there to ``MAX_SPLITS`` (or one split per key tile) the one whose
  busiest SM does the least work, ``ceil(programs / SMs) * (ceil(tiles / splits) + 1)`` in key
  tiles (the 1: a program's fixed cost, ``SPLIT_OVERHEAD_TILES``), the smallest on a tie (fewer
  partials to merge). Key tiles are dealt out evenly: split sizes differ
  by at most one tile. S shorter than ``MIN_TILES_TO_SPLIT`` tiles is never split.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_DIMS = (16, 32, 64, 128)
BLOCK_IS = (16, 32, 64)
MAX_SPLITS = 128
MIN_TILES_TO_SPLIT = 4
MIN_CTAS_PER_SM = 2
MIN_WARPS_PER_SM = 8
# A program's fixed work (q load, pipeline fill, partial store and its share of the merge), in
# key tiles: it keeps the split count from trading whole programs for fractions of a tile.
SPLIT_OVERHEAD_TILES = 1
KEY_ALIGN = 16  # S % KEY_ALIGN == 0: mask rows start 16-byte aligned (fp16 and fp32)

# Shared memory per SM (bytes) by compute capability; unknown archs get the smallest Ampere+ value.
SMEM_PER_SM = {
    75: 64 << 10,
    80: 164 << 10,
    86: 100 << 10,
    87: 164 << 10,
    89: 100 << 10,
    90: 228 << 10,
}
SMEM_DEFAULT = 100 << 10
SMEM_RESERVED_PER_CTA = 1 << 10


@dataclass(frozen=True)
class KernelTiles:
    """Launch shape of one call: tile sizes (elements), warps, pipeline stages, key splits."""

    block_i: int
    block_s: int
    num_warps: int
    num_stages: int
    num_splits: int


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def block_i_for(num_queries: int, head_dim: int) -> int:
    """Query rows per program: 16, 32 or 64 (64 for D = 128)."""
    if head_dim >= 128:
        return 64
    for block_i in BLOCK_IS:
        if num_queries <= block_i:
            return block_i
    return BLOCK_IS[-1]


def num_warps_for(block_i: int) -> int:
    """One warp per 16 query rows (the tensor-core tile's M)."""
    return block_i // 16


def keys_aligned(num_keys: int) -> bool:
    """Whether mask rows (stride S) start 16-byte aligned, which vector mask loads need."""
    return num_keys % KEY_ALIGN == 0


def block_s_for(head_dim: int, aligned: bool = True, elem: int = 2) -> int:
    """Keys per main-loop iteration (``elem``: bytes per query/key/value element)."""
    if head_dim >= 128:
        block_s = 32
    elif head_dim >= 64:
        block_s = 64
    else:
        block_s = 128 if aligned else 64
    return block_s // 2 if elem >= 4 else block_s


def min_block_s(head_dim: int) -> int:
    """The smallest key tile any call with this head dim uses (sizes the split bound)."""
    return block_s_for(head_dim, aligned=False, elem=4)


def ctas_per_sm(num_warps: int) -> int:
    """Programs per SM the split count aims for: >= 2 CTAs and >= 8 warps."""
    return max(MIN_CTAS_PER_SM, cdiv(MIN_WARPS_PER_SM, num_warps))


def stage_bytes(block_i: int, block_s: int, head_dim: int, elem: int, mask_elem: int) -> int:
    """Shared memory one pipeline stage costs: a K, a V and a mask tile; twice that for fp32
    inputs, whose three-pass TF32 dots stage split operands too (measured on the cubins: three
    stages took 3 to 5.6 times the tiles' bytes)."""
    tiles = 2 * block_s * head_dim * elem + block_i * block_s * mask_elem
    return 2 * tiles if elem >= 4 else tiles


def num_stages_for(
    arch: int, block_i: int, block_s: int, head_dim: int, elem: int, mask_elem: int
) -> int:
    """Software-pipeline depth (Triton ``num_stages``) for a GPU of compute capability ``arch``.

    ``3 * stage_bytes`` (a margin over the two buffers Triton allocates for three stages, for its
    layout-conversion scratch) must fit one CTA's share of the SM's shared memory.
    """
    if arch < 80:
        return 1
    smem = SMEM_PER_SM.get(arch, SMEM_DEFAULT)
    share = smem // ctas_per_sm(num_warps_for(block_i)) - SMEM_RESERVED_PER_CTA
    return 3 if 3 * stage_bytes(block_i, block_s, head_dim, elem, mask_elem) <= share else 2


def splits_for(programs_per_split: int, key_tiles: int, num_sms: int, num_warps: int) -> int:
    """Split count for ``programs_per_split`` = B * H * query tiles programs over ``key_tiles``."""
    if key_tiles < MIN_TILES_TO_SPLIT or programs_per_split < 1 or num_sms < 1:
        return 1
    limit = min(MAX_SPLITS, key_tiles)
    slots = ctas_per_sm(num_warps) * num_sms
    first = min(limit, cdiv(slots, programs_per_split))

    def busiest_sm_tiles(splits: int) -> int:
        per_program = cdiv(key_tiles, splits) + SPLIT_OVERHEAD_TILES
        return cdiv(programs_per_split * splits, num_sms) * per_program

    best, best_cost = first, busiest_sm_tiles(first)
    for splits in range(first + 1, limit + 1):
        cost = busiest_sm_tiles(splits)
        if cost < best_cost:
            best, best_cost = splits, cost
    return best


def choose_num_splits(
    batch: int,
    heads: int,
    num_queries: int,
    num_keys: int,
    block_i: int,
    block_s: int,
    num_sms: int,
) -> int:
    """Split count for a launch of (B, H, I, S) with the given tiles on ``num_sms`` SMs."""
    programs = batch * heads * cdiv(num_queries, block_i)
    return splits_for(programs, cdiv(num_keys, block_s), num_sms, num_warps_for(block_i))


def max_splits(num_keys: int, head_dim: int) -> int:
    """Most splits any call may use (what the workspace is sized for): one key tile each."""
    return max(1, min(MAX_SPLITS, cdiv(num_keys, min_block_s(head_dim))))


def split_tiles(key_tiles: int, num_splits: int, split: int) -> tuple[int, int]:
    """Key tiles [first, end) of one split: the kernel's even deal, for tests and docs."""
    per, extra = divmod(key_tiles, num_splits)
    first = split * per + min(split, extra)
    return first, first + per + (1 if split < extra else 0)


def kernel_tiles(
    batch: int,
    heads: int,
    num_queries: int,
    num_keys: int,
    head_dim: int,
    num_sms: int,
    arch: int = 90,
    elem: int = 2,
    mask_elem: int = 2,
) -> KernelTiles:
    """Tiles, warps, stages and split count of the JIT path for one call (module docstring)."""
    block_i = block_i_for(num_queries, head_dim)
    block_s = block_s_for(head_dim, keys_aligned(num_keys), elem)
    return KernelTiles(
        block_i=block_i,
        block_s=block_s,
        num_warps=num_warps_for(block_i),
        num_stages=num_stages_for(arch, block_i, block_s, head_dim, elem, mask_elem),
        num_splits=choose_num_splits(
            batch, heads, num_queries, num_keys, block_i, block_s, num_sms
        ),
    )


def dot_precision(elem: int, arch: int) -> str:
    """``tl.dot`` input precision: fp32 inputs use three TF32 passes (about fp32 accuracy on the
    tensor cores) from sm_80, plain FMAs before; fp16/bf16 multiply exactly on the tensor cores."""
    if elem < 4:
        return "tf32"  # ignored for 16-bit inputs
    return "tf32x3" if arch >= 80 else "ieee"


def dot_passes(precision: str) -> int:
    """Tensor-core instructions per product element: 3 for tf32x3, else 1 (for SASS reading)."""
    return 3 if precision == "tf32x3" else 1
