"""ctest: softmask.kernels.launcher_ctypes against the library just built, without a GPU.

Usage: python checkCtypesBinding.py LIBRARY. The binding's SmaParams must match the C struct field
for field: the library's own argument checks (softmask_kernels.cpp, validate) run before any CUDA
call, so their answers tell whether each field landed where the C code reads it. Host tensors
stand in for device memory and the workspace size is 0, so nothing is ever launched: a call that
passes validation stops at the missing driver (no GPU) or at the workspace check, which comes
before any launch (softmask_kernels_launch.cpp, launch()).
Exit status 0 when every check holds.
"""

from __future__ import annotations

import ctypes
import sys

import torch

from softmask.kernels import launcher_ctypes

INVALID_ARGUMENT, UNSUPPORTED, WORKSPACE_TOO_SMALL, CUDA_ERROR = 1, 2, 4, 5
# What a call that passed every argument check returns here: no driver, no current context (no
# GPU, or a GPU host where this process made none current), or the zero-byte workspace refused.
PAST_VALIDATION = (CUDA_ERROR, WORKSPACE_TOO_SMALL)


def call(
    lib: ctypes.CDLL, mask: torch.Tensor, alpha: torch.Tensor | None, **sizes
) -> tuple[int, str]:
    b, i, s, h, d = (
        sizes.get(n, v) for n, v in (("b", 2), ("i", 100), ("s", 1024), ("h", 8), ("d", 32))
    )
    # Expanded views: the shapes a call has, without the memory (the library reads no data here).
    q = torch.zeros(h * d, dtype=torch.float16).expand(b, i, h * d)
    k = torch.zeros(h * d, dtype=torch.float16).expand(b, s, h * d)
    workspace = torch.zeros(64, dtype=torch.uint8)
    params = launcher_ctypes.make_params(
        q,
        k,
        k,
        mask,
        alpha,
        h,
        None,
        0,
        torch.zeros(h * d, dtype=torch.float16).expand(b, i, h * d),
        workspace,
        0,
    )
    status = lib.softmask_sma_forward(ctypes.byref(params), None)
    return status, lib.softmask_status_string(status).decode()


def main(path: str) -> int:
    lib = launcher_ctypes.load(path)
    failures = []

    def expect(
        what: str, got: tuple[int, str], status: int | tuple[int, ...], text: str = ""
    ) -> None:
        allowed = status if isinstance(status, tuple) else (status,)
        if got[0] not in allowed or text not in got[1]:
            failures.append(f"{what}: got {got}, want status {status} with {text!r}")

    bool_mask = torch.zeros(2, 100, 1024, dtype=torch.bool)
    half_mask = torch.zeros(2, 100, 1024, dtype=torch.float16)
    alpha = torch.ones(8)
    # Valid hard-mode and soft-mode calls pass every argument check (the mask dtype 3 and a NULL
    # alpha are accepted in hard mode) and stop before any launch.
    expect("hard mode, alpha None", call(lib, bool_mask, None), PAST_VALIDATION)
    expect("soft mode", call(lib, half_mask, alpha), PAST_VALIDATION)
    # NULL alpha is refused in soft mode: the alpha and mask_dtype fields are read where written.
    expect(
        "soft mode, alpha None",
        call(lib, half_mask, None),
        INVALID_ARGUMENT,
        "alpha pointer is NULL",
    )
    # Sizes land in their fields: a head dim without kernels, H read from num_heads.
    expect("head dim 48", call(lib, bool_mask, None, d=48), UNSUPPORTED, "head_dim 48")
    tiny_mask = torch.zeros(1, dtype=torch.bool).expand(1, 1, 1 << 20)
    expect(
        "S * E above 2^31",
        call(lib, tiny_mask, None, b=1, i=1, s=1 << 20, h=16, d=128),
        UNSUPPORTED,
        "below 2^31",
    )
    for line in failures:
        print("FAIL:", line)
    print(f"{5 - len(failures)} of 5 ctypes binding checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
