"""softmask.model building blocks: configs, state-dict layout, deformable conv, encoder, decoder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import softmask.model
from softmask.errors import InputError
from softmask.model import ModelConfig, build_model, resolve_config
from softmask.model.decoder import INVALID_LOGIT
from softmask.model.deform_conv import DeformConvBlock, deform_conv2d
from softmask.model.encoder import grid_cell_masks, initial_descriptors
from softmask.model.position import sine_position_encoding
from softmask.ops import SoftMaskedAttention

# HODOR's checkpoint layout (every tensor name and shape), shipped with the package.
STATE_DICT_JSON = Path(softmask.model.__file__).parent / "data" / "hodor_state_dict.json"


@pytest.fixture(scope="module")
def hodor_model():
    torch.manual_seed(0)
    return build_model("hodor").eval()


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def test_hodor_state_dict_equals_checkpoint_layout(hodor_model):
    layout = json.loads(STATE_DICT_JSON.read_text())
    expected = {name: (shape, dtype) for name, shape, dtype in layout["tensors"]}
    got = {
        name: (list(t.shape), str(t.dtype).replace("torch.", ""))
        for name, t in hodor_model.state_dict().items()
    }
    assert list(got) == list(expected)  # same names, same order
    assert got == expected
    assert sum(p.numel() for p in hodor_model.parameters()) == layout["counts"]["total_params"]


def test_tiny_is_small_and_uses_the_same_code_paths(tiny_model, hodor_model):
    assert sum(p.numel() for p in tiny_model.parameters()) < 3_000_000
    assert type(tiny_model.encoder) is type(hodor_model.encoder)
    assert type(tiny_model.decoder) is type(hodor_model.decoder)
    for model in (tiny_model, hodor_model):
        assert all(
            isinstance(layer.cross_attn, SoftMaskedAttention) for layer in model.encoder.attn_layers
        )


def test_config_forms_resolve_to_the_same_config():
    tiny = resolve_config("tiny")
    assert resolve_config(tiny) is tiny
    assert resolve_config(tiny.to_dict()) == tiny
    assert resolve_config({"preset": "tiny", "encoder_layers": 3}).encoder_layers == 3
    assert ModelConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(InputError, match="unknown model preset"):
        resolve_config("huge")
    with pytest.raises(InputError, match="num_bg_descriptors"):
        resolve_config({"preset": "tiny", "num_bg_descriptors": 5})


def _bilinear_zero_outside(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """Value of img [C, H, W] at real (y, x); zero outside (torchvision's deform-conv sampling)."""
    c, h, w = img.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return torch.zeros(c, dtype=img.dtype)
    y0, x0 = math.floor(y), math.floor(x)
    out = torch.zeros(c, dtype=img.dtype)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx]
    return out


def _naive_deform_conv(x, offsets, weight, bias, pad):
    b = x.shape[0]
    cout, _, kh, kw = weight.shape
    ho, wo = offsets.shape[-2:]
    out = torch.zeros(b, cout, ho, wo, dtype=x.dtype)
    for n in range(b):
        for oy in range(ho):
            for ox in range(wo):
                acc = bias.clone()
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        y = oy - pad + i + float(offsets[n, 2 * k, oy, ox])
                        xx = ox - pad + j + float(offsets[n, 2 * k + 1, oy, ox])
                        acc += weight[:, :, i, j] @ _bilinear_zero_outside(x[n], y, xx)
                out[n, :, oy, ox] = acc
    return out


def test_deform_conv_matches_direct_bilinear_loop():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    offsets = 2.5 * torch.randn(2, 18, 5, 6, generator=gen, dtype=torch.float64)  # reaches outside
    offsets[0, 0, 0, 0] = 0.0  # exact integer positions too
    weight = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    got = deform_conv2d(x, offsets, weight, bias, padding=1)
    torch.testing.assert_close(
        got, _naive_deform_conv(x, offsets, weight, bias, 1), rtol=1e-9, atol=1e-9
    )


def test_deform_conv_with_zero_offsets_is_a_convolution():
    x = torch.randn(1, 4, 7, 5, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    got = deform_conv2d(x, torch.zeros(1, 18, 7, 5, dtype=torch.float64), weight, bias)
    torch.testing.assert_close(got, F.conv2d(x, weight, bias, padding=1))


def test_sine_position_encoding_hand_values():
    pos = sine_position_encoding(2, 4, 8)
    # Channels 0..3 encode the row y (normalised to 2*pi * y / H), 4..7 the column x; even
    # features sin, odd cos; feature f has frequency 10000^(2*(f//2)/4).
    y = 1 / (2 + 1e-6) * 2 * math.pi
    x = 4 / (4 + 1e-6) * 2 * math.pi
    assert pos.shape == (8, 2, 4)
    assert pos[0, 0, 3].item() == pytest.approx(math.sin(y), abs=1e-6)
    assert pos[1, 0, 3].item() == pytest.approx(math.cos(y), abs=1e-6)
    assert pos[6, 0, 3].item() == pytest.approx(math.sin(x / 10000 ** (2 / 4)), abs=1e-6)
    assert pos[7, 1, 3].item() == pytest.approx(math.cos(x / 10000 ** (2 / 4)), abs=1e-6)


def test_grid_cells_cover_the_map_with_remainder_in_last_cells():
    cells = grid_cell_masks(7, 8, (3, 3))
    assert torch.equal(cells.sum(0), torch.ones(7, 8))
    # 7 // 3 = 2 rows per cell, last row of cells takes 3; 8 // 3 = 2 cols, last takes 4.
    assert cells[0, :2, :2].all() and cells[0].sum() == 4
    assert cells[8, 4:, 4:].all() and cells[8].sum() == 12


def test_initial_descriptors_match_nonzero_means():
    gen = torch.Generator().manual_seed(2)
    fmap = torch.randn(1, 12, 5, generator=gen)
    fg = torch.rand(1, 3, 12, generator=gen)
    fg[0, 1] = 0.3  # no pixel above 0.5 ...
    fg[0, 1, 7] = 0.45  # ... so the argmax pixel alone
    bg = torch.zeros(1, 2, 12)
    bg[0, 0, :4] = 0.9
    got_fg, got_bg = initial_descriptors(fmap, fg, bg)
    for i in (0, 2):
        idx = (fg[0, i] > 0.5).nonzero().squeeze(1)
        torch.testing.assert_close(got_fg[0, i], fmap[0, idx].mean(0))
    torch.testing.assert_close(got_fg[0, 1], fmap[0, 7])
    torch.testing.assert_close(got_bg[0, 0], fmap[0, :4].mean(0))
    torch.testing.assert_close(got_bg[0, 1], torch.zeros(5))


@pytest.mark.parametrize("preset", ["tiny", "hodor"])
def test_encoder_and_decoder_shapes(preset, tiny_model, hodor_model):
    model = {"tiny": tiny_model, "hodor": hodor_model}[preset]
    cfg = model.config
    b, t, h8, w8 = 2, 3, 4, 6
    f4 = torch.randn(b, cfg.dim, 2 * h8, 2 * w8)
    f8 = torch.randn(b, cfg.dim, h8, w8)
    for num_objects in range(1, 11):
        with torch.no_grad():
            fg, bg = model.encode(f8, torch.rand(b, num_objects, h8, w8) / num_objects)
            assert fg.shape == (b, num_objects, cfg.dim)
            assert bg.shape == (b, cfg.num_bg_descriptors, cfg.dim)
            fg_t = fg[:, :, None].expand(-1, -1, t, -1)
            bg_t = bg[:, :, None].expand(-1, -1, t, -1)
            logits = model.decode(f4, f8, fg_t, bg_t)
        assert logits.shape == (b, 1 + cfg.num_bg_descriptors + num_objects, 2 * h8, 2 * w8)
        assert torch.isfinite(logits).all()


def test_mismatched_shapes_name_the_tensor(tiny_model):
    dim = tiny_model.config.dim
    f4, f8 = torch.randn(1, dim, 8, 12), torch.randn(1, dim, 4, 6)
    fg, bg = torch.randn(1, 2, 3, dim), torch.randn(1, 9, 3, dim)
    with pytest.raises(InputError, match=r"fg_masks must be \[B, I, h, w\] = \[1, \?, 4, 6\]"):
        tiny_model.encode(f8, torch.rand(1, 2, 4, 5))
    with pytest.raises(InputError, match=r"f4 must be \[B, C, 2h, 2w\]"):
        tiny_model.decode(f8, f8, fg, bg)
    with pytest.raises(InputError, match=r"bg must be \[B, Qb, T, C\] = \[1, 9, 3, 64\]"):
        tiny_model.decode(f4, f8, fg, bg[:, :, :2])
    with pytest.raises(InputError, match="both fg_valid and bg_valid"):
        tiny_model.decode(f4, f8, fg, bg, fg_valid=torch.ones(1, 2, 3, dtype=torch.bool))


def test_full_hodor_forward_at_small_resolution(hodor_model):
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        f4, f8 = hodor_model.features(images)
        assert f4.shape == (1, 256, 16, 24) and f8.shape == (1, 256, 8, 12)
        fg, bg = hodor_model.encode(f8, torch.rand(1, 2, 8, 12) / 2)
        logits = hodor_model.decode(f4, f8, fg[:, :, None], bg[:, :, None])
    assert logits.shape == (1, 1 + 9 + 2, 16, 24) and torch.isfinite(logits).all()


def test_features_reject_sizes_not_multiple_of_32(tiny_model):
    with pytest.raises(InputError, match="multiple of 32"):
        tiny_model.features(torch.randn(1, 3, 40, 64))


def test_invalid_object_slots_do_not_change_valid_descriptors(tiny_model):
    f8 = torch.randn(1, tiny_model.config.dim, 4, 6)
    masks = torch.rand(1, 3, 4, 6) / 3
    with torch.no_grad():
        fg2, bg2 = tiny_model.encode(f8, masks[:, :2], tiny_model.background_masks(masks[:, :2]))
        fg3, bg3 = tiny_model.encode(
            f8,
            masks,
            tiny_model.background_masks(masks[:, :2]),
            fg_valid=torch.tensor([[True, True, False]]),
        )
    torch.testing.assert_close(fg3[:, :2], fg2)
    torch.testing.assert_close(bg3, bg2)


def test_invalid_time_steps_and_slots_do_not_change_decoding(tiny_model):
    cfg = tiny_model.config
    f4, f8 = torch.randn(1, cfg.dim, 8, 12), torch.randn(1, cfg.dim, 4, 6)
    fg = torch.randn(1, 2, 2, cfg.dim)
    bg = torch.randn(1, cfg.num_bg_descriptors, 2, cfg.dim)
    with torch.no_grad():
        ref = tiny_model.decode(f4, f8, fg, bg)
        # One extra time step and one extra object, all invalid, filled with junk.
        fg_x = torch.cat(
            (torch.cat((fg, torch.randn(1, 2, 1, cfg.dim)), 2), torch.randn(1, 1, 3, cfg.dim)), 1
        )
        bg_x = torch.cat((bg, torch.randn(1, cfg.num_bg_descriptors, 1, cfg.dim)), 2)
        fg_valid = torch.tensor([[[True, True, False], [True, True, False], [False, False, False]]])
        bg_valid = torch.tensor([True, True, False]).expand(1, cfg.num_bg_descriptors, 3)
        got = tiny_model.decode(f4, f8, fg_x, bg_x, fg_valid, bg_valid)
    torch.testing.assert_close(got[:, :-1], ref, rtol=1e-4, atol=1e-4)
    assert (got[:, -1] == INVALID_LOGIT).all()
    assert got.softmax(1)[:, -1].max() == 0.0


def test_encoder_and_decoder_are_differentiable_on_batches(tiny_model):
    model = build_model("tiny").train()
    images = torch.randn(2, 3, 64, 64)
    f4, f8 = model.features(images)
    masks = torch.rand(2, 2, 8, 8, requires_grad=True)
    fg, bg = model.encode(f8, masks / 2)
    logits = model.decode(f4, f8, fg[:, :, None], bg[:, :, None])
    logits.logsumexp(1).mean().backward()
    assert masks.grad is not None and masks.grad.abs().sum() > 0
    assert model.feature_extractor.stage4[0][0].weight.grad is not None


def test_deform_conv_exports_to_standard_onnx_and_runs_in_onnxruntime(tmp_path):
    block = DeformConvBlock(16).eval()
    x = torch.randn(1, 16, 6, 7)
    path = tmp_path / "deform.onnx"
    torch.onnx.export(block, (x,), str(path), dynamo=True, opset_version=18)
    graph = onnx.load(str(path))
    ops = {node.op_type for node in graph.graph.node}
    assert "DeformConv" not in ops and "GridSample" in ops
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) <= 18
    got = ort.InferenceSession(str(path)).run(None, {graph.graph.input[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), block(x), rtol=1e-4, atol=1e-5)
