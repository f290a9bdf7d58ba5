"""Random inputs for soft-masked attention tests (shared by the op, ONNX and kernel tests)."""

from __future__ import annotations

import torch


def make_inputs(
    batch: int,
    queries: int,
    keys: int,
    embed: int,
    heads: int,
    dtype: torch.dtype = torch.float32,
    padding: str = "none",
    seed: int = 0,
    alpha_max: float = 32.0,
    binary_mask: bool = False,
) -> dict:
    """Inputs of one op call as a dict (query, key, value, mask, alpha, num_heads,
    key_padding_mask).

    padding: "none" (no key_padding_mask), "some" (random padded keys, at least one kept per
    batch element), or "rows" (like "some", but batch element 0 fully padded when batch > 1).
    binary_mask: mask values exactly 0 or 1.
    """
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, queries, embed, generator=g)
    key = torch.randn(batch, keys, embed, generator=g)
    value = torch.randn(batch, keys, embed, generator=g)
    mask = torch.rand(batch, queries, keys, generator=g)
    if binary_mask:
        mask = (mask > 0.5).float()
    alpha = torch.rand(heads, generator=g) * alpha_max
    kpm = None
    if padding != "none":
        kpm = torch.rand(batch, keys, generator=g) < 0.4
        kpm[:, torch.randint(0, keys, (1,), generator=g)] = False
        if padding == "rows" and batch > 1:
            kpm[0] = True
    return {
        "query": query.to(dtype), "key": key.to(dtype), "value": value.to(dtype),
        "mask": mask.to(dtype), "alpha": alpha.to(dtype), "num_heads": heads,
        "key_padding_mask": kpm,
    }


def as_float64(inputs: dict) -> dict:
    """The same inputs with every floating tensor in float64 (for the oracle)."""
    return {
        k: (v.double() if isinstance(v, torch.Tensor) and v.dtype.is_floating_point else v)
        for k, v in inputs.items()
    }
