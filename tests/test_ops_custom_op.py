"""The torch.library custom op: accuracy, autograd, registration, validation, the module."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import as_float64, make_inputs

from softmask.errors import InputError
from softmask.ops import (
    SoftMaskedAttention,
    default_scaling_factors,
    reference,
    soft_masked_attention,
)
from softmask.ops.custom_op import soft_masked_attention_op

SHAPES = [  # (B, I, S, E, H)
    (1, 1, 1, 8, 2),
    (2, 1, 9, 64, 2),
    (2, 5, 1, 256, 8),
    (3, 7, 33, 256, 8),
    (2, 40, 70, 256, 8),
    (4, 3, 17, 64, 2),
]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("padding", ["none", "rows"])
def test_custom_op_fp32_matches_float64_reference(shape, padding):
    inputs = make_inputs(*shape, padding=padding, seed=shape[2])
    got = soft_masked_attention(**inputs)
    want = reference.soft_masked_attention(**as_float64(inputs))
    assert got.dtype == torch.float32
    assert relative_error(got, want) < 1e-5


@pytest.mark.parametrize("padding", ["none", "rows"])
def test_gradcheck_in_all_five_inputs(padding):
    inputs = as_float64(make_inputs(2, 3, 5, 8, 2, padding=padding, seed=1, alpha_max=4.0))
    names = ("query", "key", "value", "mask", "alpha")
    leaves = tuple(inputs[n].clone().requires_grad_(True) for n in names)

    def fn(*tensors):
        return soft_masked_attention(
            *tensors, num_heads=2, key_padding_mask=inputs["key_padding_mask"]
        )

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7)


def test_backward_matches_autograd_of_reference():
    inputs = as_float64(make_inputs(2, 4, 11, 16, 4, padding="some", seed=2))
    names = ("query", "key", "value", "mask", "alpha")
    a = {n: inputs[n].clone().requires_grad_(True) for n in names}
    b = {n: inputs[n].clone().requires_grad_(True) for n in names}
    grad_out = torch.randn(2, 4, 16, dtype=torch.float64)
    (soft_masked_attention(**{**inputs, **a}) * grad_out).sum().backward()
    (reference.soft_masked_attention(**{**inputs, **b}) * grad_out).sum().backward()
    for n in names:
        torch.testing.assert_close(a[n].grad, b[n].grad, rtol=1e-10, atol=1e-10, msg=n)


@pytest.mark.parametrize("padding", ["none", "some"])
def test_opcheck_registration(padding):
    inputs = make_inputs(2, 3, 6, 16, 2, padding=padding, seed=4)
    for name in ("query", "key", "value", "mask", "alpha"):
        inputs[name].requires_grad_(True)
    args = tuple(inputs[n] for n in ("query", "key", "value", "mask", "alpha", "num_heads",
                                     "key_padding_mask"))
    torch.library.opcheck(soft_masked_attention_op, args)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    queries=st.integers(1, 9),
    keys=st.integers(1, 40),
    heads=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([4, 8, 16]),
    mask_kind=st.sampled_from(["uniform", "binary", "zeros", "ones"]),
    padding=st.sampled_from(["none", "some", "rows"]),
    seed=st.integers(0, 2**16),
)
def test_property_custom_op_matches_reference(batch, queries, keys, heads, head_dim, mask_kind,
                                              padding, seed):
    inputs = make_inputs(batch, queries, keys, heads * head_dim, heads, padding=padding,
                         seed=seed, binary_mask=mask_kind == "binary")
    if mask_kind in ("zeros", "ones"):
        inputs["mask"] = torch.full_like(inputs["mask"], float(mask_kind == "ones"))
    got = soft_masked_attention(**inputs)
    want = reference.soft_masked_attention(**as_float64(inputs))
    assert torch.isfinite(got).all()
    assert relative_error(got, want) < 1e-5


def _bad_inputs():
    good = make_inputs(2, 3, 5, 8, 2, padding="some")
    cases = {
        "key batch": ({"key": torch.randn(3, 5, 8)}, "key"),
        "value length": ({"value": torch.randn(2, 6, 8)}, "value"),
        "alpha length": ({"alpha": torch.ones(3)}, "alpha"),
        "mask shape": ({"mask": torch.rand(2, 5, 3)}, "mask"),
        "mask dtype": ({"mask": torch.ones(2, 3, 5, dtype=torch.bool)}, "mask"),
        "heads": ({"num_heads": 3}, "num_heads"),
        "padding shape": ({"key_padding_mask": torch.zeros(2, 4, dtype=torch.bool)},
                          "key_padding_mask"),
        "padding dtype": ({"key_padding_mask": torch.zeros(2, 5)}, "key_padding_mask"),
        "query rank": ({"query": torch.randn(3, 8)}, "query"),
        "key dtype": ({"key": torch.randn(2, 5, 8, dtype=torch.float64)}, "key"),
    }
    return [pytest.param(good, change, word, id=name) for name, (change, word) in cases.items()]


@pytest.mark.parametrize("good,change,word", _bad_inputs())
def test_bad_inputs_raise_value_error_naming_the_tensor(good, change, word):
    with pytest.raises(ValueError, match=word) as info:
        soft_masked_attention(**{**good, **change})
    assert isinstance(info.value, InputError)
    text = str(info.value)
    if "shape" in text:
        assert "[" in text and "got" in text, text


def test_bad_mask_shape_message_states_expected_shape():
    good = make_inputs(2, 3, 5, 8, 2)
    with pytest.raises(ValueError, match=r"mask must have shape \[B, I, S\] = \[2, 3, 5\], got \[2, 5, 3\]"):
        soft_masked_attention(**{**good, "mask": torch.rand(2, 5, 3)})


def test_module_uses_hodor_parameter_names_and_default_alpha():
    module = SoftMaskedAttention(256, 8)
    names = {n: tuple(p.shape) for n, p in module.state_dict().items()}
    assert names == {
        "scaling_factors": (8,),
        **{f"{p}_proj.{w}": (256, 256) if w == "weight" else (256,)
           for p in ("q", "k", "v", "out") for w in ("weight", "bias")},
    }
    assert module.scaling_factors.tolist() == [32, 32, 16, 16, 8, 8, 4, 4]
    assert isinstance(module.scaling_factors, torch.nn.Parameter)
    frozen = SoftMaskedAttention(64, 2, learnable_scaling_factors=False)
    assert "scaling_factors" not in dict(frozen.named_parameters())
    assert "scaling_factors" in frozen.state_dict()


def test_default_scaling_factor_rule():
    assert default_scaling_factors(8) == [32, 32, 16, 16, 8, 8, 4, 4]
    assert default_scaling_factors(4) == [32, 16, 8, 4]
    assert default_scaling_factors(2) == [32, 8]
    assert default_scaling_factors(1) == [32]
    with pytest.raises(ValueError):
        default_scaling_factors(0)


def test_module_forward_equals_projections_around_reference():
    torch.manual_seed(0)
    module = SoftMaskedAttention(16, 4).double().eval()
    x, mem = torch.randn(2, 3, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    mask = torch.rand(2, 3, 7, dtype=torch.float64)
    got = module(x, mem, mem, mask)
    inner = reference.soft_masked_attention(
        module.q_proj(x), module.k_proj(mem), module.v_proj(mem), mask, module.scaling_factors, 4
    )
    torch.testing.assert_close(got, module.out_proj(inner))


def test_module_rejects_indivisible_embed_dim():
    with pytest.raises(ValueError, match="divisible"):
        SoftMaskedAttention(30, 8)


def test_mask_gradient_flows_through_module():
    module = SoftMaskedAttention(16, 2)
    mask = torch.rand(1, 2, 5, requires_grad=True)
    module(torch.randn(1, 2, 16), torch.randn(1, 5, 16), torch.randn(1, 5, 16), mask).sum().backward()
    assert mask.grad is not None and torch.count_nonzero(mask.grad) > 0
    assert module.scaling_factors.grad is not None
