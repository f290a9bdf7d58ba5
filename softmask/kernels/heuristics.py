"""Tile sizes and split count of the fused kernel: pure functions of the problem size.

The C launcher (``plugins/softmaskKernels/softmask_heuristics.cpp``) implements the same rules;
``tests/test_kernel_heuristics.py`` checks both agree. Change them together.

Rules (Flash-Decoding, ``shared/reference/soft_masked_attention.md``):
- query tile ``BLOCK_I``: 16 (the dot's minimum) for I <= 16, else 64 (the mask tile is read once
  per query tile, and keys once per query tile too, so few large tiles beat many small ones);
- key tile ``BLOCK_S``: 128 for D <= 64, 64 for D = 128 (register budget of the score and
  accumulator tiles with 4 warps);
- splits: the smallest count, up to ``MAX_SPLITS`` and the number of key tiles, whose waves over
  the SMs are at least ``TARGET_WAVE_EFFICIENCY`` full; else the most efficient count. Never split
  when S fits in ``MIN_TILES_TO_SPLIT`` key tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_DIMS = (16, 32, 64, 128)
MAX_SPLITS = 128
MIN_TILES_TO_SPLIT = 4
TARGET_WAVE_EFFICIENCY = 0.85
NUM_WARPS = 4


@dataclass(frozen=True)
class KernelTiles:
    """Launch shape of one call: tile sizes (elements), warps per program, key splits."""

    block_i: int
    block_s: int
    num_warps: int
    num_splits: int


def block_i_for(num_queries: int) -> int:
    """Query rows per program (16 or 64)."""
    return 16 if num_queries <= 16 else 64


def block_s_for(head_dim: int) -> int:
    """Keys per loop iteration (128 for D <= 64, else 64)."""
    return 128 if head_dim <= 64 else 64


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def wave_efficiency(num_programs: int, num_sms: int) -> float:
    """Fraction of SM slots busy over all waves (one program per SM per wave)."""
    waves = cdiv(num_programs, num_sms)
    return num_programs / (waves * num_sms)


def max_splits(num_keys: int, head_dim: int) -> int:
    """Most splits any call may use (also what the workspace is sized for): one key tile each."""
    return max(1, min(MAX_SPLITS, cdiv(num_keys, block_s_for(head_dim))))


def choose_num_splits(
    batch: int, heads: int, num_queries: int, num_keys: int, head_dim: int, num_sms: int
) -> int:
    """Split count for a launch of (B, H, I, S, D) on a GPU with ``num_sms`` SMs."""
    key_tiles = cdiv(num_keys, block_s_for(head_dim))
    if key_tiles < MIN_TILES_TO_SPLIT:
        return 1
    base_programs = batch * heads * cdiv(num_queries, block_i_for(num_queries))
    limit = max_splits(num_keys, head_dim)
    best, best_eff = 1, wave_efficiency(base_programs, num_sms)
    for splits in range(1, limit + 1):
        eff = wave_efficiency(base_programs * splits, num_sms)
        if eff >= TARGET_WAVE_EFFICIENCY:
            return splits
        if eff > best_eff + 1e-9:
            best, best_eff = splits, eff
    return best


def kernel_tiles(
    batch: int, heads: int, num_queries: int, num_keys: int, head_dim: int, num_sms: int
) -> KernelTiles:
    """Tiles, warps and split count for one call (see the module docstring for the rules)."""
    return KernelTiles(
        block_i=block_i_for(num_queries),
        block_s=block_s_for(head_dim),
        num_warps=NUM_WARPS,
        num_splits=choose_num_splits(batch, heads, num_queries, num_keys, head_dim, num_sms),
    )
