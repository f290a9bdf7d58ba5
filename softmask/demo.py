"""The end-to-end demo: a module with two soft-masked attention layers, exported to ONNX and run
in ONNX Runtime (plain, through the function bodies), compared with PyTorch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from softmask.export import export_onnx
from softmask.ops import SoftMaskedAttention

logger = logging.getLogger(__name__)


class TwoLayerSoftMaskedAttention(nn.Module):
    """Descriptors attending twice to a feature map under soft masks (HODOR's encoder pattern).

    forward(queries [B, I, E], pixels [B, S, E], mask [B, I, S]) -> [B, I, E]
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8) -> None:
        super().__init__()
        self.layers = nn.ModuleList(SoftMaskedAttention(embed_dim, num_heads) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in range(2))

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for attn, norm in zip(self.layers, self.norms):
            queries = norm(queries + attn(queries, pixels, pixels, mask))
        return queries


@dataclass(frozen=True)
class ParityRow:
    """One input size of the demo: max abs error of ONNX Runtime vs PyTorch, and latencies (ms)."""

    batch: int
    queries: int
    keys: int
    max_abs_error: float
    torch_ms: float
    onnxruntime_ms: float


def _inputs(batch: int, queries: int, keys: int, embed: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, queries, embed, generator=g),
            torch.randn(batch, keys, embed, generator=g),
            torch.rand(batch, queries, keys, generator=g))


def _best_ms(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def run_op_demo(
    out_dir: str | Path,
    sizes: tuple[tuple[int, int, int], ...] = ((1, 12, 6420), (2, 40, 1500), (1, 1, 1)),
    seed: int = 0,
) -> tuple[Path, list[ParityRow]]:
    """Export the two-layer module (B, I, S dynamic), run it in ONNX Runtime, compare.

    Args:
        out_dir: folder for ``two_layer_sma.onnx``.
        sizes: (batch, queries, keys) to run through the one exported model.

    Returns:
        The ONNX path and one ParityRow per size.
    """
    import onnxruntime as ort

    torch.manual_seed(seed)
    module = TwoLayerSoftMaskedAttention().eval()
    batch, queries, keys = Dim("batch"), Dim("queries"), Dim("keys")
    path = export_onnx(
        module,
        _inputs(2, 5, 64, 256, seed),
        Path(out_dir) / "two_layer_sma.onnx",
        dynamic_shapes=({0: batch, 1: queries}, {0: batch, 1: keys},
                        {0: batch, 1: queries, 2: keys}),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = []
    for b, i, s in sizes:
        inputs = _inputs(b, i, s, 256, seed + s)
        feed = {x.name: t.numpy() for x, t in zip(session.get_inputs(), inputs)}
        with torch.no_grad():
            want = module(*inputs).numpy()
            torch_ms = _best_ms(lambda: module(*inputs))
        got = session.run(None, feed)[0]
        ort_ms = _best_ms(lambda: session.run(None, feed))
        rows.append(ParityRow(b, i, s, float(np.abs(got - want).max()), torch_ms, ort_ms))
        logger.info("B=%d I=%d S=%d: max abs error %.2e", b, i, s, rows[-1].max_abs_error)
    return path, rows
