"""The SASS reader behind benchmarks/kernel_sass.py: loop finding on hand-written disassembly,
and the static properties of one really compiled fast kernel (no GPU needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from softmask.kernels import aot, sass

REPO = Path(__file__).resolve().parents[1]

LOOP_WITH_BRANCH = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/               @P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0020*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0030*/                   HMMA.16816.F32 R8, R4, R6, R8 ;
        /*0040*/                   LDGSTS.E.BYPASS.128 [R1], desc[UR4][R2.64] ;
        /*0050*/              @!P1 BRA `(.L_x_2) ;
        /*0060*/                   LDG.E.U16 R5, desc[UR4][R2.64] ;
.L_x_2:
        /*0070*/                   ISETP.NE.AND P0, PT, R1, RZ, PT ;
        /*0080*/               @P0 BRA `(.L_x_1) ;
.L_x_0:
        /*0090*/                   EXIT ;
.L_x_3:
        /*00a0*/                   BRA `(.L_x_3);
"""

NESTED = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   IADD3 R2, R2, 0x1, RZ ;
.L_x_1:
        /*0020*/                   HGMMA.64x128x16.F32 R24, gdesc[UR8], RZ, !UPT ;
        /*0030*/                   HGMMA.64x32x16.F32 R88, R24, gdesc[UR4].tnspB, R88 ;
        /*0040*/               @P1 BRA `(.L_x_1) ;
        /*0050*/                   LDL R3, [R1+0x10] ;
        /*0060*/               @P0 BRA `(.L_x_0) ;
        /*0070*/                   EXIT ;
"""


def test_loop_with_an_inner_branch_and_a_trailing_self_loop():
    k = sass.analyse(LOOP_WITH_BRANCH)
    assert k.instructions == 11 and k.loops == 2
    loop = k.main_loop
    assert loop.instructions == 7 and loop.blocks == 3
    assert loop.mma == 1 and loop.mma_macs_per_warp == 16 * 8 * 16
    assert loop.global_loads == {16: 1, 128: 1}
    assert loop.async_copies == {128: 1}
    assert k.method.startswith("loop with the most MMA")


def test_nested_loops_pick_the_inner_mma_loop():
    k = sass.analyse(NESTED)
    assert k.loops == 2
    loop = k.main_loop
    assert loop.instructions == 3 and loop.local_memory == 0 and loop.nested_loops == 0
    # HGMMA runs per warpgroup: each of its 4 warps is credited a quarter of the MACs.
    assert loop.mma_macs_per_warp == (64 * 128 * 16 + 64 * 32 * 16) // 4


def test_keys_per_iteration_from_mma_work():
    k = sass.analyse(NESTED)
    # 4 warps x per-warp MACs / (2 products x BLOCK_I 64 x D 32)
    assert sass.keys_per_iteration(k.main_loop, 4, 64, 32) == pytest.approx(
        (64 * 128 * 16 + 64 * 32 * 16) / (2 * 64 * 32)
    )


def test_unknown_mma_shape_is_an_error():
    with pytest.raises(ValueError, match="HMMA shape"):
        sass.analyse(LOOP_WITH_BRANCH.replace("HMMA.16816", "HMMA.999"))


def test_no_instruction_is_an_error():
    with pytest.raises(ValueError, match="no SASS instructions"):
        sass.analyse("garbage\n", "k")


def test_resource_usage_fields():
    text = (
        "Resource usage:\n Common:\n  GLOBAL:11\n Function sma_split_kernel:\n"
        "  REG:246 STACK:0 SHARED:1024 LOCAL:0 CONSTANT[0]:632\n"
    )
    assert sass.parse_resource_usage(text) == {"REG": 246, "STACK": 0, "SHARED": 1024, "LOCAL": 0}


def test_compiled_fast_kernel_meets_the_static_goals():
    """A real cubin (sm_80, fp16, D=16, BLOCK_I=16): the main loop is one block that streams K, V
    and M with 16-byte asynchronous copies, has no scalar global load and no spill."""
    variant = aot.Variant(80, "fp16", "fp16", 16, 16, general=False)
    # A subprocess: the interpreter tests may have decorated the kernels in interpreter mode here.
    compile_one = (
        "import sys; from softmask.kernels import aot; "
        "v = aot.Variant(80, 'fp16', 'fp16', 16, 16, general=False); "
        "sys.stdout.buffer.write(aot._compile(v)['image'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-c", compile_one], env=env, capture_output=True, check=False, timeout=300
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    text, usage = sass.disassemble(run.stdout)
    k = sass.analyse(text, variant.symbol)
    loop = k.main_loop
    assert usage["STACK"] == 0
    assert loop.blocks == 1 and loop.local_memory == 0
    assert loop.global_loads == {}
    assert set(loop.async_copies) == {128}
    assert sass.keys_per_iteration(loop, variant.num_warps, 16, 16) == variant.block_s
