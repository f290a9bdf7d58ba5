"""The reference op against an independent per-element loop, and its documented edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from op_cases import make_inputs

from softmask.ops import reference


def naive_soft_masked_attention(query, key, value, mask, alpha, num_heads, key_padding_mask=None):
    """The paper's formula, one (b, h, i) row at a time, in float64 Python loops."""
    b_size, i_size, e = query.shape
    s_size = key.shape[1]
    d = e // num_heads
    out = torch.zeros(b_size, i_size, e, dtype=torch.float64)
    for b in range(b_size):
        keep = [s for s in range(s_size)
                if key_padding_mask is None or not bool(key_padding_mask[b, s])]
        if not keep:
            continue
        for h in range(num_heads):
            cols = slice(h * d, (h + 1) * d)
            for i in range(i_size):
                logits = [
                    float(query[b, i, cols].double() @ key[b, s, cols].double()) / math.sqrt(d)
                    - float(alpha[h]) * (1.0 - float(mask[b, i, s]))
                    for s in keep
                ]
                top = max(logits)
                weights = [math.exp(x - top) for x in logits]
                total = sum(weights)
                for w, s in zip(weights, keep):
                    out[b, i, cols] += (w / total) * value[b, s, cols].double()
    return out


@pytest.mark.parametrize(
    "shape,padding",
    [((2, 3, 5, 8, 2), "none"), ((2, 4, 7, 12, 3), "rows"), ((1, 1, 1, 4, 1), "none"),
     ((3, 2, 6, 8, 4), "some")],
)
def test_reference_matches_per_element_formula(shape, padding):
    inputs = make_inputs(*shape, dtype=torch.float64, padding=padding, seed=sum(shape))
    got = reference.soft_masked_attention(**inputs)
    want = naive_soft_masked_attention(**inputs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fully_padded_batch_element_gives_zeros_and_zero_gradients():
    inputs = make_inputs(2, 3, 5, 8, 2, dtype=torch.float64, padding="rows", seed=3)
    leaves = {k: inputs[k].clone().requires_grad_(True)
              for k in ("query", "key", "value", "mask", "alpha")}
    out = reference.soft_masked_attention(**{**inputs, **leaves})
    assert torch.count_nonzero(out[0]) == 0
    assert torch.isfinite(out).all()
    out.sum().backward()
    for name in ("query", "mask"):
        assert torch.count_nonzero(leaves[name].grad[0]) == 0, name
    assert torch.count_nonzero(leaves["key"].grad[0]) == 0
    assert torch.isfinite(leaves["alpha"].grad).all()


def test_mask_of_ones_is_plain_attention():
    inputs = make_inputs(2, 3, 6, 8, 2, dtype=torch.float64, seed=5)
    inputs["mask"] = torch.ones_like(inputs["mask"])
    q, k, v = (inputs[n].view(2, -1, 2, 4).transpose(1, 2) for n in ("query", "key", "value"))
    plain = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
    want = plain.transpose(1, 2).reshape(2, 3, 8)
    torch.testing.assert_close(reference.soft_masked_attention(**inputs), want)


def test_large_alpha_with_binary_mask_attends_only_inside_mask():
    inputs = make_inputs(1, 2, 6, 4, 1, dtype=torch.float64, seed=7)
    inputs["alpha"] = torch.tensor([1e4], dtype=torch.float64)
    mask = torch.zeros(1, 2, 6, dtype=torch.float64)
    mask[0, 0, 2] = 1.0
    mask[0, 1, 4] = 1.0
    inputs["mask"] = mask
    out = reference.soft_masked_attention(**inputs)
    torch.testing.assert_close(out[0, 0], inputs["value"][0, 2])
    torch.testing.assert_close(out[0, 1], inputs["value"][0, 4])


def test_half_inputs_are_computed_in_float32_and_returned_in_half():
    inputs = make_inputs(2, 3, 9, 16, 2, dtype=torch.float16, padding="some", seed=11)
    out = reference.soft_masked_attention(**inputs)
    assert out.dtype == torch.float16
    want = reference.soft_masked_attention(
        **{k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
           for k, v in inputs.items()}
    )
    torch.testing.assert_close(out.float(), want, rtol=0, atol=2e-3)
