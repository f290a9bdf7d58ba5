"""Split/tile heuristic of the fused kernel (pure functions), and the C launcher's copy of it."""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from softmask.kernels import heuristics

PRACTICAL_KEYS = (6420, 14400, 25680, 57600)
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("keys", PRACTICAL_KEYS)
@pytest.mark.parametrize("queries", (5, 40))
def test_wave_efficiency_at_batch_1_heads_8_on_132_sms(keys, queries):
    splits = heuristics.choose_num_splits(1, 8, queries, keys, 32, 132)
    programs = 8 * heuristics.cdiv(queries, heuristics.block_i_for(queries)) * splits
    waves = -(-programs // 132)
    assert programs / (waves * 132) >= 0.85


@pytest.mark.parametrize("keys", (1, 100, 300, 383))
def test_tiny_key_counts_are_not_split(keys):
    assert heuristics.choose_num_splits(1, 8, 40, keys, 32, 132) == 1


def test_splits_never_exceed_key_tiles_or_cap():
    for keys, d in itertools.product((600, 5000, 10**6), heuristics.HEAD_DIMS):
        s = heuristics.choose_num_splits(1, 1, 1, keys, d, 10_000)
        assert (
            1 <= s <= min(heuristics.MAX_SPLITS, heuristics.cdiv(keys, heuristics.block_s_for(d)))
        )


def test_full_grid_needs_no_split():
    # B*H*query tiles already fill 132 SMs at >= 85%: splitting would only add merge work.
    assert heuristics.choose_num_splits(4, 33, 40, 57600, 32, 132) == 1


def test_tiles_follow_the_documented_rules():
    assert heuristics.kernel_tiles(1, 8, 5, 6420, 32, 132).block_i == 16
    assert heuristics.kernel_tiles(1, 8, 40, 6420, 32, 132).block_i == 64
    assert heuristics.kernel_tiles(1, 8, 40, 6420, 64, 132).block_s == 128
    assert heuristics.kernel_tiles(1, 8, 40, 6420, 128, 132).block_s == 64


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
    return ctypes.CDLL(str(out))


def test_c_split_count_equals_python(c_heuristics):
    fn = c_heuristics.softmask_sma_num_splits
    fn.argtypes = [ctypes.c_int32] * 6
    fn.restype = ctypes.c_int32
    bound = c_heuristics.softmask_sma_max_splits
    bound.argtypes = [ctypes.c_int32] * 2
    bound.restype = ctypes.c_int32
    for b, h, i, s, d, sms in itertools.product(
        (1, 4),
        (1, 8),
        (1, 5, 17, 40, 100),
        (1, 513, 6420, 25680, 57600),
        heuristics.HEAD_DIMS,
        (46, 132),
    ):
        assert fn(b, h, i, s, d, sms) == heuristics.choose_num_splits(b, h, i, s, d, sms), (
            b,
            h,
            i,
            s,
            d,
            sms,
        )
        assert bound(s, d) == heuristics.max_splits(s, d)
