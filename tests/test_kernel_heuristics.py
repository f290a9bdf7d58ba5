"""Tile, stage and split rules of the fused kernel (pure functions), and the C launcher's copy."""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from softmask.kernels import heuristics as hx

PRACTICAL_KEYS = (6420, 6480, 14400, 25680, 57600)
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("keys", PRACTICAL_KEYS)
@pytest.mark.parametrize("queries", (5, 20, 40))
@pytest.mark.parametrize("sms", (16, 108, 132))
def test_at_least_two_ctas_and_eight_warps_per_sm(keys, queries, sms):
    tiles = hx.kernel_tiles(1, 8, queries, keys, 32, sms)
    per_split = 8 * hx.cdiv(queries, tiles.block_i)
    programs = per_split * tiles.num_splits
    # ... unless S has fewer key tiles than that needs (then one split per tile).
    most = per_split * min(hx.MAX_SPLITS, hx.cdiv(keys, tiles.block_s))
    assert programs >= min(2 * sms, most)
    assert programs * tiles.num_warps >= min(8 * sms, most * tiles.num_warps)


@pytest.mark.parametrize("keys", PRACTICAL_KEYS)
@pytest.mark.parametrize("sms", (16, 132))
def test_split_count_minimises_the_busiest_sms_key_tiles(keys, sms):
    """No count from the occupancy floor up gives the busiest SM fewer key tiles to stream."""
    block_i, block_s = 64, hx.block_s_for(32, hx.keys_aligned(keys))
    tiles = hx.cdiv(keys, block_s)
    chosen = hx.choose_num_splits(1, 8, 40, keys, block_i, block_s, sms)

    def busiest(n):
        return hx.cdiv(8 * n, sms) * (hx.cdiv(tiles, n) + hx.SPLIT_OVERHEAD_TILES)

    floor = min(tiles, hx.cdiv(hx.ctas_per_sm(4) * sms, 8))
    assert chosen >= floor
    assert all(busiest(chosen) <= busiest(n) for n in range(floor, min(128, tiles) + 1))


def test_h100_examples_from_the_docs():
    # B=1, H=8, I=40 on 132 SMs: S=25,680: 201 key tiles of 128 over 33 splits (6 or 7 each);
    # S=6,420 (64-key tiles, unaligned): 101 tiles over 33 splits, not 101 one-tile programs.
    assert hx.choose_num_splits(1, 8, 40, 25680, 64, 128, 132) == 33
    assert hx.choose_num_splits(1, 8, 40, 6420, 64, 64, 132) == 33


@pytest.mark.parametrize("tiles,splits", [(201, 33), (3, 8), (16, 17), (50, 7), (1, 1)])
def test_key_tiles_are_dealt_evenly(tiles, splits):
    ranges = [hx.split_tiles(tiles, splits, s) for s in range(splits)]
    sizes = [end - first for first, end in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert ranges[0][0] == 0 and ranges[-1][1] == tiles
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


@pytest.mark.parametrize("keys", (1, 100, 300, 383))
def test_tiny_key_counts_are_not_split(keys):
    assert hx.choose_num_splits(1, 8, 40, keys, 64, 128, 132) == 1


def test_splits_never_exceed_key_tiles_or_cap():
    for keys, d, sms in itertools.product((600, 5000, 10**6), hx.HEAD_DIMS, (1, 132, 10_000)):
        block_s = hx.block_s_for(d)
        s = hx.choose_num_splits(1, 1, 1, keys, 16, block_s, sms)
        assert 1 <= s <= min(hx.MAX_SPLITS, hx.cdiv(keys, block_s))
        assert s <= hx.max_splits(keys, d)


def test_full_grid_needs_no_split():
    # B*H*query tiles already give every SM >= 2 CTAs of 4 warps: splitting only adds merges.
    assert hx.choose_num_splits(4, 66, 40, 57600, 64, 128, 132) == 1


def test_tile_rules():
    assert [hx.block_i_for(i, 32) for i in (1, 16, 17, 32, 33, 40, 200)] == [
        16,
        16,
        32,
        32,
        64,
        64,
        64,
    ]
    assert hx.block_i_for(5, 128) == 64
    assert [hx.num_warps_for(b) for b in hx.BLOCK_IS] == [1, 2, 4]
    assert hx.block_s_for(32, aligned=True) == 128
    assert hx.block_s_for(32, aligned=False) == 64
    assert hx.block_s_for(64) == 64 and hx.block_s_for(128) == 32
    assert hx.block_s_for(32, aligned=True, elem=4) == 64
    assert hx.keys_aligned(25680) and not hx.keys_aligned(6420)


def test_pipeline_depth_fits_shared_memory():
    assert hx.num_stages_for(75, 64, 64, 32, 2, 2) == 1
    for arch, block_i, d, elem in itertools.product(
        (80, 86, 87, 90), hx.BLOCK_IS, hx.HEAD_DIMS, (2, 4)
    ):
        block_s = hx.block_s_for(d, True, elem)
        stages = hx.num_stages_for(arch, block_i, block_s, d, elem, elem)
        assert stages in (2, 3)
        if stages == 3:
            share = hx.SMEM_PER_SM[arch] // hx.ctas_per_sm(hx.num_warps_for(block_i))
            assert 3 * hx.stage_bytes(block_i, block_s, d, elem, elem) <= share
    # The shape on H100/H200: three stages of 32 KiB in a 113 KiB share (2 CTAs/SM).
    assert hx.num_stages_for(90, 64, 128, 32, 2, 2) == 3


def test_fp32_uses_three_tf32_passes_from_ampere():
    assert hx.dot_precision(4, 80) == "tf32x3" and hx.dot_precision(4, 75) == "ieee"
    assert hx.dot_passes("tf32x3") == 3 and hx.dot_passes("tf32") == 1


@pytest.fixture(scope="module")
def c_heuristics(tmp_path_factory) -> ctypes.CDLL:
    """plugins/softmaskKernels/softmask_heuristics.cpp compiled alone (pure host code, no GPU)."""
    cxx = shutil.which("c++") or shutil.which("g++")
    assert cxx, "a C++ compiler (c++ or g++) is needed to check the C heuristic"
    cuda_include = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    out = tmp_path_factory.mktemp("heuristics") / "libheuristics.so"
    src = REPO / "plugins" / "softmaskKernels" / "softmask_heuristics.cpp"
    subprocess.run(
        [
            cxx,
            "-std=c++17",
            "-O1",
            "-shared",
            "-fPIC",
            f"-I{src.parent}",
            f"-I{cuda_include}",
            str(src),
            "-o",
            str(out),
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(out))
    i32, i64 = ctypes.c_int32, ctypes.c_int64
    for name, args in {
        "softmask_sma_block_i": [i32] * 2,
        "softmask_sma_block_s": [i32] * 3,
        "softmask_sma_max_splits": [i32] * 2,
        "softmask_sma_splits_for": [i64, i64, i32, i32],
        "softmask_sma_num_splits": [i32] * 7,
    }.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = i32
    return lib


def test_c_tile_rules_equal_python(c_heuristics):
    for i, d in itertools.product((1, 5, 16, 17, 32, 33, 40, 100), hx.HEAD_DIMS):
        assert c_heuristics.softmask_sma_block_i(i, d) == hx.block_i_for(i, d), (i, d)
    for d, s, elem in itertools.product(hx.HEAD_DIMS, (5, 6420, 6480, 25680), (2, 4)):
        assert c_heuristics.softmask_sma_block_s(d, s, elem) == hx.block_s_for(
            d, hx.keys_aligned(s), elem
        ), (d, s, elem)
    for s, d in itertools.product((1, 513, 6420, 25680, 57600, 10**6), hx.HEAD_DIMS):
        assert c_heuristics.softmask_sma_max_splits(s, d) == hx.max_splits(s, d), (s, d)


def test_c_split_count_equals_python(c_heuristics):
    for programs, tiles, sms, warps in itertools.product(
        (1, 8, 24, 100, 300), (1, 3, 4, 51, 201, 450, 2000), (16, 46, 132), (1, 2, 4)
    ):
        assert c_heuristics.softmask_sma_splits_for(programs, tiles, sms, warps) == hx.splits_for(
            programs, tiles, sms, warps
        ), (programs, tiles, sms, warps)
    for b, h, i, s, d, sms in itertools.product(
        (1, 4), (1, 8), (1, 5, 17, 40, 100), (1, 513, 6420, 25680, 57600), hx.HEAD_DIMS, (46, 132)
    ):
        block_i, block_s = hx.block_i_for(i, d), hx.block_s_for(d, hx.keys_aligned(s))
        got = c_heuristics.softmask_sma_num_splits(b, h, i, s, block_i, block_s, sms)
        assert got == hx.choose_num_splits(b, h, i, s, block_i, block_s, sms), (b, h, i, s, d, sms)
