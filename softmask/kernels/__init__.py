"""The fused soft-masked attention kernel (Triton): JIT launcher, tile heuristics, AOT generator.

The kernels module is imported on ``sma_forward``'s first call, not with this package, and Triton
picks interpret-or-compile when it decorates them then: set ``TRITON_INTERPRET=1`` before that
first call to run the kernel on CPU tensors (tests); without it the kernel needs CUDA tensors. Raises ImportError when Triton is
absent (the custom op then falls back to the reference math).
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("triton") is None:
    raise ImportError("softmask.kernels needs triton (pip install 'softmask[gpu]')")

from softmask.kernels.launch import sma_forward, unsupported_reason

__all__ = ["sma_forward", "unsupported_reason"]
