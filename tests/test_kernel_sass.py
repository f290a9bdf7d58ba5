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


def _compile_in_subprocess(variant_args: str) -> bytes:
    """Cubin of ``aot.Variant(<variant_args>)``, compiled outside this process (the interpreter
    tests may have decorated the kernels in interpreter mode here)."""
    compile_one = (
        "import sys; from softmask.kernels import aot; "
        f"v = aot.Variant({variant_args}); "
        "sys.stdout.buffer.write(aot._compile(v)['image'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-c", compile_one], env=env, capture_output=True, check=False, timeout=300
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    return run.stdout


def test_compiled_fast_kernel_meets_the_static_goals():
    """A real cubin (sm_80, fp16, D=16, BLOCK_I=16): the main loop is one block that streams K, V
    and M with 16-byte asynchronous copies, has no scalar global load and no spill."""
    variant = aot.Variant(80, "fp16", "fp16", 16, 16, general=False)
    cubin = _compile_in_subprocess("80, 'fp16', 'fp16', 16, 16, general=False")
    text, usage = sass.disassemble(cubin)
    k = sass.analyse(text, variant.symbol)
    loop = k.main_loop
    assert usage["STACK"] == 0
    assert loop.blocks == 1 and loop.local_memory == 0
    assert loop.global_loads == {}
    assert set(loop.async_copies) == {128}
    assert sass.keys_per_iteration(loop, variant.num_warps, 16, 16) == variant.block_s


# Hard mode's main loop per key per head on sm_90 (fp16, D = 32, BLOCK_I 64, BLOCK_S 128): 843
# instructions per 128 keys when measured (6.6; the soft kernel: 638, 5.0). The bound leaves room
# for compiler drift, not for a per-key reduction over the mask bytes (1,188, 9.3).
HARD_INSTRUCTIONS_PER_KEY = 7.0


def test_compiled_hard_kernel_meets_the_static_goals():
    """The fast hard-mode kernel (sm_90, fp16 with a bool mask, D = 32, BLOCK_I = 64): one-block
    main loop of vector asynchronous copies (K and V by 16 bytes; Triton's shared layout for the
    byte mask takes 8), no scalar global load, no spill, one pass over BLOCK_S keys, and at most
    HARD_INSTRUCTIONS_PER_KEY instructions per key per head."""
    variant = aot.Variant(90, "fp16", "bool", 32, 64, general=False)
    text, usage = sass.disassemble(_compile_in_subprocess("90, 'fp16', 'bool', 32, 64, False"))
    loop = sass.analyse(text, variant.symbol).main_loop
    assert usage["STACK"] == 0
    assert loop.blocks == 1 and loop.local_memory == 0
    assert loop.global_loads == {}
    assert 128 in loop.async_copies and set(loop.async_copies) <= {64, 128}
    assert sass.keys_per_iteration(loop, variant.num_warps, 64, 32) == variant.block_s
    assert loop.instructions / variant.block_s <= HARD_INSTRUCTIONS_PER_KEY


def test_hard_variants_cover_every_arch_dtype_and_head_dim():
    """The table the launcher searches: a general hard row (mask dtype bool, key padding, any S)
    per arch, PTX, dtype and head dim; a fast one per head dim on every cubin arch from sm_80."""
    rows = aot.variants([75, 80, 87, 90])
    hard = [v for v in rows if v.hard]
    targets = {(v.arch, v.ptx) for v in rows}
    assert targets == {(75, False), (80, False), (87, False), (90, False), (87, True)}
    for arch, ptx in targets:
        for head_dim in aot.heuristics.HEAD_DIMS:
            for dtype in aot.DTYPES:
                general = [
                    v
                    for v in hard
                    if (v.arch, v.ptx, v.dtype, v.head_dim, v.general)
                    == (arch, ptx, dtype, head_dim, True)
                ]
                assert len(general) == 1
            fast = [
                v
                for v in hard
                if (v.arch, v.ptx, v.head_dim, v.general) == (arch, ptx, head_dim, False)
            ]
            assert len(fast) == (1 if arch >= 80 and not ptx else 0)
            assert all(v.dtype == "fp16" and v.block_i == aot.HARD_FAST_BLOCK_I for v in fast)
    assert all(v.symbol.startswith(f"sma_split_{v.dtype}_mbool_") for v in hard)
    # Soft rows never take a bool mask; hard rows are told apart by their mask dtype alone.
    assert {aot.MASK_DTYPES[v.mask_dtype] for v in hard} == {3}
    assert all(aot.MASK_DTYPES[v.mask_dtype] in (0, 1) for v in rows if not v.hard)


def test_table_row_of_a_hard_kernel_names_the_bool_mask(tmp_path):
    """The generated C table: a hard row carries mask dtype 3 (SOFTMASK_DTYPE_BOOL) and the
    padding and alignment of its set. Images here are stand-ins: only the table text is read."""
    rows = []
    for general in (False, True):
        variant = aot.Variant(90, "fp16", "bool", 32, 64, general)
        rows.append(
            {
                "variant": variant,
                "name": "sma_split_kernel",
                "num_warps": 4,
                "shared": 1024,
                "gscratch": 0,
                "gscratch_align": 1,
                "pscratch": 0,
                "pscratch_align": 1,
                "image": b"\0",
            }
        )
    aot.write_outputs(rows, tmp_path)
    table = (tmp_path / "softmask_kernels_table.c").read_text()
    fast, general = (r["variant"] for r in rows)
    assert f"{{90, 0, 1, 3, 32, 64, {fast.block_s}, 4, {fast.num_stages}, 0, 16, 1024, " in table
    assert (
        f"{{90, 0, 1, 3, 32, 64, {general.block_s}, 4, {general.num_stages}, 1, 1, 1024, " in table
    )
    assert (
        "3 = bool, 1 byte per key: hard mode" in (tmp_path / "softmask_kernels_table.h").read_text()
    )
