"""Hard (Mask2Former) masked attention: the op's hard mode in the reference, the custom op and
the ONNX function body, and transformers' Mask2Former converted and exported with one op node per
decoder layer, against transformers itself (random-initialised small models, no download)."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import transformers
from torch import nn

from softmask.convert import MaskedCrossAttention, convert_mask2former
from softmask.errors import InputError
from softmask.ops import onnx_op, reference, soft_masked_attention
from tests.test_cli import in_process, one_line_error

HEADS = 4


def _inputs(batch=2, queries=6, keys=40, embed=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, n, embed, generator=g, dtype=dtype) for n in (queries, keys, keys))
    keep = torch.rand(batch, queries, keys, generator=g) > 0.7
    keep[0, 1] = False  # a row whose keys are all blocked
    keep[1, -1] = False
    return q, k, v, keep


def test_hard_mode_blocks_keys_and_all_blocked_rows_attend_everywhere():
    q, k, v, keep = _inputs()
    alpha = torch.full((HEADS,), 7.0, dtype=torch.float64)
    out = reference.soft_masked_attention(q, k, v, keep, alpha, HEADS, hard=True)
    # Hand-built: softmax over the allowed keys only, and over every key for empty rows.
    qh = q.view(2, 6, HEADS, 8).transpose(1, 2)
    kh, vh = (t.view(2, 40, HEADS, 8).transpose(1, 2) for t in (k, v))
    logits = qh @ kh.transpose(-1, -2) / 8 ** 0.5
    allowed = keep | ~keep.any(-1, keepdim=True)
    logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    want = (logits.softmax(-1) @ vh).transpose(1, 2).reshape(2, 6, 32)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    # alpha plays no part; a floating mask compares with the threshold.
    other = reference.soft_masked_attention(q, k, v, keep, alpha * 0, HEADS, hard=True)
    torch.testing.assert_close(other, out, rtol=0, atol=0)
    logits_mask = torch.where(keep, 0.3, -0.3).double()
    by_threshold = soft_masked_attention(q, k, v, logits_mask, alpha, HEADS, hard=True,
                                         threshold=0.0)
    torch.testing.assert_close(by_threshold, out, rtol=0, atol=1e-12)


def test_all_blocked_rows_match_multihead_attention_after_transformers_rule():
    """transformers' decoder clears all-blocked rows before nn.MultiheadAttention
    (modeling_mask2former.py, Mask2FormerMaskedAttentionDecoder.forward: ``where =
    (attention_mask.sum(-1) != attention_mask.shape[-1])``, ``attention_mask * where``); the op
    applies the same rule itself to the raw mask."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, HEADS).double().eval()
    q, k, v, keep = _inputs()
    blocked = (~keep)[:, None].repeat(1, HEADS, 1, 1).flatten(0, 1)  # [B * H, I, S], as HF
    where = (blocked.sum(-1) != blocked.shape[-1]).to(blocked.dtype)
    cleared = blocked * where.unsqueeze(-1)
    want, _ = attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                        attn_mask=cleared)
    got, weights = MaskedCrossAttention(attention)(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=blocked)
    assert weights is None
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_hard_mode_custom_op_registration_and_gradients():
    q, k, v, keep = _inputs(keys=12)
    alpha = torch.ones(HEADS, dtype=torch.float64)
    op = torch.ops.softmask.soft_masked_attention.default
    torch.library.opcheck(op, (q, k, v, keep, alpha, HEADS, None, True))
    kpm = torch.zeros(2, 12, dtype=torch.bool)
    kpm[0, :3] = True
    torch.library.opcheck(op, (q, k, v, keep, alpha, HEADS, kpm, True))
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    soft_mask = keep.double().requires_grad_()
    a = alpha.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda q, k, v: soft_masked_attention(q, k, v, keep, alpha, HEADS, kpm, hard=True),
        (q, k, v))
    soft_masked_attention(q, k, v, soft_mask, a, HEADS, hard=True).sum().backward()
    assert soft_mask.grad is None or not soft_mask.grad.any(), "no gradient through a hard mask"
    assert a.grad is None or not a.grad.any()


def test_a_bool_mask_in_soft_mode_is_refused_by_name():
    q, k, v, keep = _inputs()
    with pytest.raises(InputError, match="mask is bool: a bool mask needs hard mode"):
        soft_masked_attention(q, k, v, keep, torch.ones(HEADS, dtype=torch.float64), HEADS)


@pytest.mark.parametrize("padded", [False, True])
def test_hard_mode_function_body_in_onnxruntime_equals_the_reference(padded):
    model = onnx_op.standalone_model(HEADS, padded, hard=True)
    node = next(n for n in model.graph.node if n.op_type == onnx_op.OP_TYPE)
    assert onnx_op.is_hard(node) and node.overload == onnx_op.overload_name(padded, True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q, k, v, keep = _inputs(dtype=torch.float32)
    kpm = None
    feeds = {"query": q.numpy(), "key": k.numpy(), "value": v.numpy(), "mask": keep.numpy(),
             "alpha": np.zeros(HEADS, np.float32)}
    if padded:
        kpm = torch.rand(2, 40, generator=torch.Generator().manual_seed(3)) < 0.4
        kpm[1] = True  # a batch element with every key padded: zeros
        feeds["key_padding_mask"] = kpm.numpy()
    got = session.run(None, feeds)[0]
    want = reference.soft_masked_attention(q, k, v, keep, torch.zeros(HEADS), HEADS, kpm,
                                           hard=True)
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=2e-6)
    assert not np.isnan(got).any()


# --- transformers' Mask2Former ----------------------------------------------------------------

H, W = 64, 96


def _mask2former(seed: int = 0):
    torch.manual_seed(seed)
    backbone = transformers.SwinConfig(
        image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=64, encoder_layers=1, decoder_layers=4, num_attention_heads=4,
        dim_feedforward=64, num_queries=10, num_labels=5)
    return transformers.Mask2FormerForUniversalSegmentation(config).eval()


def _pixels(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _block_first_rows(model):
    """Make the mask predictor block every key for queries 0-2 at every decoder layer."""
    predictor = model.model.transformer_module.decoder.mask_predictor
    original = predictor.forward

    def forward(*args, **kwargs):
        predicted, attention_mask = original(*args, **kwargs)
        attention_mask = attention_mask.clone()
        attention_mask[:, :3] = True
        return predicted, attention_mask

    predictor.forward = forward
    return model


def _relative(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("blocked_rows", [False, True], ids=["predicted", "all-blocked-rows"])
def test_converted_mask2former_equals_transformers(blocked_rows):
    model = _mask2former()
    if blocked_rows:
        _block_first_rows(model)
    converted = convert_mask2former(copy.deepcopy(model))
    layers = converted.model.transformer_module.decoder.layers
    assert all(isinstance(layer.cross_attn, MaskedCrossAttention) for layer in layers)
    assert converted.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        want, got = model(pixel_values=_pixels()), converted(pixel_values=_pixels())
    for name in ("class_queries_logits", "masks_queries_logits"):
        assert _relative(getattr(got, name), getattr(want, name)) <= 1e-5, name


@pytest.fixture(scope="module")
def hf_export(tmp_path_factory):
    """A random Mask2Former saved as transformers saves it, exported by ``softmask export``."""
    root = tmp_path_factory.mktemp("m2f")
    model = _mask2former()
    model.save_pretrained(root / "hf")
    from softmask.cli import main

    assert main(["-q", "export", "--hf-model", str(root / "hf"), "--height", str(H),
                 "--width", str(W), "--out", str(root / "export")]) == 0
    return model, root / "export"


def test_export_runs_in_onnxruntime_like_transformers_with_one_node_per_layer(hf_export):
    model, export = hf_export
    graph = onnx.load(str(export / "model.onnx"))
    nodes = [n for n in graph.graph.node if n.op_type == onnx_op.OP_TYPE]
    layers = len(model.model.transformer_module.decoder.layers)
    assert len(nodes) == layers and all(onnx_op.is_hard(n) for n in nodes)
    assert [i.name for i in graph.graph.input] == ["pixel_values"]
    names = ["class_queries_logits", "masks_queries_logits"]
    assert [o.name for o in graph.graph.output] == names
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["op_nodes"] == layers and manifest["inputs"]["pixel_values"] == [1, 3, H, W]
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    for seed in (1, 2):
        pixels = _pixels(seed)
        got = session.run(names, {"pixel_values": pixels.numpy()})
        with torch.no_grad():
            want = model(pixel_values=pixels)
        for name, value in zip(names, got):
            assert _relative(value, getattr(want, name)) <= 1e-4, name
        # The task's answer too: transformers' own semantic post-processing agrees.
        processor = transformers.Mask2FormerImageProcessor()
        ours = transformers.models.mask2former.modeling_mask2former \
            .Mask2FormerForUniversalSegmentationOutput(
                class_queries_logits=torch.from_numpy(got[0]),
                masks_queries_logits=torch.from_numpy(got[1]))
        maps = [processor.post_process_semantic_segmentation(o, target_sizes=[(H, W)])[0]
                for o in (want, ours)]
        assert torch.equal(maps[0], maps[1])


def test_hf_export_refusals_are_one_line(tmp_path, capsys):
    other = tmp_path / "detr"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["DetrForSegmentation"]}))
    args = ["export", "--height", "64", "--width", "96", "--out", tmp_path / "out"]
    one_line_error(in_process(capsys, *args, "--hf-model", other),
                   "architecture DetrForSegmentation is not supported",
                   "Mask2FormerForUniversalSegmentation")
    one_line_error(in_process(capsys, *args, "--hf-model", tmp_path),
                   "no config.json; expected a transformers save_pretrained folder")
    one_line_error(in_process(capsys, *args, "--hf-model", other, "--objects", "3"),
                   "--objects: applies to HODOR's streaming export, not to --hf-model")
    with pytest.raises(InputError, match="BertModel: not supported"):
        convert_mask2former(transformers.BertModel(transformers.BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)))
    assert not (tmp_path / "out").exists()


def test_parity_image_passes_for_the_export_and_fails_for_another_model(hf_export, tmp_path,
                                                                       capsys):
    from PIL import Image

    _, export = hf_export
    hf = export.parent / "hf"
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.png", (80, 120)), ("b.jpg", (64, 96))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / name)
    from softmask.cli import main

    capsys.readouterr()
    assert main(["parity-image", str(images), "--hf-model", str(hf), "--export", str(export),
                 "--report", str(tmp_path / "ok.json")]) == 0
    out = capsys.readouterr().out
    assert "parity onnxruntime vs transformers: PASS" in out
    report = json.loads((tmp_path / "ok.json").read_text())
    assert report["passed"] and [r["image"] for r in report["images"]] == ["a.png", "b.jpg"]
    assert all(r["semantic_agreement"] == 1.0 and r["panoptic_equal"] for r in report["images"])
    assert max(v for r in report["images"] for v in r["relative"].values()) <= 1e-4
    # Another model's weights: the comparison must say so.
    _mask2former(seed=7).save_pretrained(tmp_path / "other")
    assert main(["parity-image", str(images), "--hf-model", str(tmp_path / "other"),
                 "--export", str(export)]) == 1
    out = capsys.readouterr().out
    assert "FAIL a.png: class_queries_logits relative difference" in out and "FAIL" in out


def test_hard_nodes_lower_to_their_function_body_and_refuse_onnx_attention():
    from softmask.errors import ExportError
    from softmask.ops.onnx_lowering import lower_attention

    model = onnx_op.standalone_model(HEADS, hard=True)
    with pytest.raises(ExportError, match=r"is hard-masked .*\(use 'function'\)"):
        lower_attention(model, "onnx-attention")
    lowered = lower_attention(model, "function")
    assert not [n for n in lowered.graph.node if n.op_type == onnx_op.OP_TYPE]
    session = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"])
    q, k, v, keep = _inputs(dtype=torch.float32)
    got = session.run(None, {"query": q.numpy(), "key": k.numpy(), "value": v.numpy(),
                             "mask": keep.numpy(), "alpha": np.zeros(HEADS, np.float32)})[0]
    want = reference.soft_masked_attention(q, k, v, keep, torch.zeros(HEADS), HEADS, hard=True)
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=2e-6)
