"""ctypes binding of ``libsoftmask_kernels`` (the AOT launcher) for torch CUDA tensors.

Used by the GPU tests and ``benchmarks/op_gpu.py`` to run the same cubins the TensorRT plugin runs.
Mirrors ``plugins/softmaskKernels/softmask_kernels.h``; keep the two in step.
"""

from __future__ import annotations

import ctypes
import logging
import subprocess
import sys
from pathlib import Path

import torch

from softmask.errors import BackendUnavailable, SoftmaskError

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# Mask dtypes: SoftmaskDtype plus SOFTMASK_DTYPE_BOOL (3), the hard (Mask2Former) mode.
MASK_DTYPE_CODES = {**DTYPE_CODES, torch.bool: 3}


class SmaParams(ctypes.Structure):
    """SoftmaskSmaParams, field for field."""

    _fields_ = [
        ("query", ctypes.c_void_p),
        ("key", ctypes.c_void_p),
        ("value", ctypes.c_void_p),
        ("mask", ctypes.c_void_p),
        ("alpha", ctypes.c_void_p),
        ("key_padding_mask", ctypes.c_void_p),
        ("output", ctypes.c_void_p),
        ("workspace", ctypes.c_void_p),
        ("workspace_size", ctypes.c_size_t),
        ("batch", ctypes.c_int32),
        ("num_queries", ctypes.c_int32),
        ("num_keys", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("dtype", ctypes.c_int),
        ("mask_dtype", ctypes.c_int),
        ("alpha_dtype", ctypes.c_int),
        ("num_splits", ctypes.c_int32),
    ]


class LauncherError(SoftmaskError):
    """softmask_sma_forward returned a non-zero status; the message is the library's text."""


def load(path: str | Path) -> ctypes.CDLL:
    """Open libsoftmask_kernels.so and declare the C signatures."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise BackendUnavailable(f"cannot load the kernel launcher {path}: {exc}") from exc
    lib.softmask_sma_forward.argtypes = [ctypes.POINTER(SmaParams), ctypes.c_void_p]
    lib.softmask_sma_forward.restype = ctypes.c_int32
    lib.softmask_sma_workspace_size.argtypes = [ctypes.c_int32] * 5
    lib.softmask_sma_workspace_size.restype = ctypes.c_size_t
    lib.softmask_status_string.argtypes = [ctypes.c_int32]
    lib.softmask_status_string.restype = ctypes.c_char_p
    return lib


def build_for_current_gpu(build_dir: Path) -> Path:
    """Configure and build the launcher for this GPU's arch only (needs cmake and nvcc)."""
    major, minor = torch.cuda.get_device_capability()
    configure = [
        "cmake",
        "-S",
        str(REPO),
        "-B",
        str(build_dir),
        "-DSOFTMASK_BUILD_PLUGIN=OFF",
        "-DBUILD_TESTING=OFF",
        f"-DCMAKE_CUDA_ARCHITECTURES={major}{minor}",
        f"-DPython3_EXECUTABLE={sys.executable}",
    ]
    for cmd in (configure, ["cmake", "--build", str(build_dir), "-j"]):
        logger.info("running %s", " ".join(cmd))
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            # The tail names the cause (e.g. a CUDA toolkit below the floor in CMakeLists.txt).
            output = (done.stdout + done.stderr).strip().splitlines()[-25:]
            raise BackendUnavailable(
                f"could not build the kernel launcher for sm_{major}{minor} "
                f"({' '.join(cmd[:2])} exited with {done.returncode}):\n" + "\n".join(output)
            )
    return build_dir / "lib" / "libsoftmask_kernels.so"


class Launcher:
    """Calls softmask_sma_forward on torch tensors; keeps one workspace buffer, grown on demand."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self._workspace: torch.Tensor | None = None

    def workspace_bytes(
        self, batch: int, queries: int, keys: int, heads: int, head_dim: int
    ) -> int:
        return int(self.lib.softmask_sma_workspace_size(batch, queries, keys, heads, head_dim))

    def __call__(
        self,
        query,
        key,
        value,
        mask,
        alpha,
        num_heads,
        key_padding_mask=None,
        num_splits=0,
        out=None,
    ) -> torch.Tensor:
        """Forward on torch's current stream; tensors contiguous on one CUDA device.

        query [B, I, E], key/value [B, S, E], mask [B, I, S] (float, or bool for the hard mode:
        True = attend, a row with no allowed key attends to every key), alpha [H] (may be None in
        hard mode: not read), key_padding_mask [B, S] bool (True = padded) or None.
        """
        b, i, e = query.shape
        out = torch.empty_like(query) if out is None else out
        need = self.workspace_bytes(b, i, key.shape[1], num_heads, e // num_heads)
        if self._workspace is None or self._workspace.numel() < max(need, 1):
            self._workspace = torch.empty(max(need, 1), dtype=torch.uint8, device=query.device)
        params = make_params(
            query,
            key,
            value,
            mask,
            alpha,
            num_heads,
            key_padding_mask,
            num_splits,
            out,
            self._workspace,
            need,
        )
        status = self.lib.softmask_sma_forward(
            ctypes.byref(params), torch.cuda.current_stream(query.device).cuda_stream
        )
        if status != 0:
            raise LauncherError(self.lib.softmask_status_string(status).decode())
        return out


def make_params(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor | None,
    num_heads: int,
    key_padding_mask: torch.Tensor | None,
    num_splits: int,
    out: torch.Tensor,
    workspace: torch.Tensor,
    workspace_size: int,
) -> SmaParams:
    """SoftmaskSmaParams for these tensors (shapes as in ``Launcher.__call__``); reads no data.

    A bool mask selects the hard mode (mask dtype 3); alpha None passes NULL, which only the hard
    mode accepts.
    """
    b, i, e = query.shape
    kpm = key_padding_mask.view(torch.uint8).data_ptr() if key_padding_mask is not None else None
    return SmaParams(
        query.data_ptr(),
        key.data_ptr(),
        value.data_ptr(),
        mask.data_ptr(),
        None if alpha is None else alpha.data_ptr(),
        kpm,
        out.data_ptr(),
        workspace.data_ptr(),
        workspace_size,
        b,
        i,
        key.shape[1],
        num_heads,
        e // num_heads,
        DTYPE_CODES[query.dtype],
        MASK_DTYPE_CODES[mask.dtype],
        DTYPE_CODES[torch.float32 if alpha is None else alpha.dtype],
        num_splits,
    )
