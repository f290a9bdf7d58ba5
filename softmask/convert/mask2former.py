"""Mask2Former (transformers' ``Mask2FormerForUniversalSegmentation``): its masked
cross-attention as softmask's op in hard mode.

Each decoder layer of transformers' Mask2Former calls ``nn.MultiheadAttention`` (sequence-first
[L, B, E] tensors) with a bool ``attn_mask`` [B * H, I, S], True where the predicted mask's sigmoid
is < 0.5, the same for every head, after the decoder cleared rows whose keys were all blocked
(those attend everywhere). ``MaskedCrossAttention`` makes the same call through
``softmask.ops.soft_masked_attention(..., hard=True)``: the projections are the module's own
parameters (same names, so state dicts are unchanged), the mask is read once per batch element
instead of once per head, and the op applies the all-blocked rule itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from softmask import __version__
from softmask.errors import ExportError, InputError
from softmask.files import atomic_dir
from softmask.ops import soft_masked_attention

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("Mask2FormerForUniversalSegmentation", "Mask2FormerModel")
OUTPUT_NAMES = ("class_queries_logits", "masks_queries_logits")
MANIFEST_NAME = "manifest.json"


class MaskedCrossAttention(nn.Module):
    """``nn.MultiheadAttention.forward`` for Mask2Former's calls, through the op in hard mode.

    forward(query [I, B, E], key [S, B, E], value [S, B, E], attn_mask bool [B * H, I, S] or
    [I, S] (True = blocked), key_padding_mask bool [B, S] (True = padded)) ->
    (output [I, B, E], None): attention weights are not computed.
    """

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        problems = [what for what, bad in (
            ("batch_first=True", attention.batch_first),
            ("separate q/k/v projection weights", not attention._qkv_same_embed_dim),
            ("add_bias_kv", attention.bias_k is not None),
            ("add_zero_attn", attention.add_zero_attn),
        ) if bad]
        if problems:
            raise InputError(f"nn.MultiheadAttention with {', '.join(problems)}: not the layout "
                             "of transformers' Mask2Former decoder")
        self.embed_dim, self.num_heads = attention.embed_dim, attention.num_heads
        self.in_proj_weight = attention.in_proj_weight
        self.in_proj_bias = attention.in_proj_bias
        self.out_proj = attention.out_proj
        # Hard mode ignores alpha; the node still takes an [H] input.
        self.register_buffer("alpha", torch.zeros(self.num_heads), persistent=False)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        **_: Any,
    ) -> tuple[torch.Tensor, None]:
        weights = self.in_proj_weight.chunk(3)
        biases = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
        q, k, v = (F.linear(x.transpose(0, 1), w, b)
                   for x, w, b in zip((query, key, value), weights, biases))
        batch, queries, keys = q.shape[0], q.shape[1], k.shape[1]
        if attn_mask is None:
            keep = torch.ones(batch, queries, keys, dtype=torch.bool, device=q.device)
        elif attn_mask.dtype != torch.bool:
            raise InputError("MaskedCrossAttention: attn_mask must be bool (True = blocked), as "
                             f"Mask2Former's decoder passes it; got {attn_mask.dtype}")
        elif attn_mask.dim() == 2:
            keep = ~attn_mask.expand(batch, queries, keys)
        else:
            # Mask2Former repeats one mask per head: head 0's is every head's.
            keep = ~attn_mask.view(batch, self.num_heads, queries, keys)[:, 0]
        out = soft_masked_attention(q, k, v, keep, self.alpha.to(q.dtype), self.num_heads,
                                    key_padding_mask, hard=True)
        return self.out_proj(out).transpose(0, 1), None


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    name = type(model).__name__
    if name not in SUPPORTED_ARCHITECTURES:
        raise InputError(f"{name}: not supported; softmask converts "
                         f"{' and '.join(SUPPORTED_ARCHITECTURES)} (transformers)")
    inner = model.model if name == "Mask2FormerForUniversalSegmentation" else model
    return list(inner.transformer_module.decoder.layers)


def convert_mask2former(model: nn.Module) -> nn.Module:
    """Replace the masked cross-attention of every decoder layer of ``model`` (in place) with
    ``MaskedCrossAttention``; weights are untouched. Returns ``model``.

    Raises:
        InputError: ``model`` is not a supported Mask2Former, or a layer's attention is not the
            layout transformers' Mask2Former uses.
    """
    layers = _decoder_layers(model)
    for layer in layers:
        if not isinstance(layer.cross_attn, MaskedCrossAttention):
            layer.cross_attn = MaskedCrossAttention(layer.cross_attn)
    logger.info("converted %d masked cross-attention layers", len(layers))
    return model


class _Outputs(nn.Module):
    """pixel_values [B, 3, H, W] -> (class_queries_logits [B, Q, C + 1],
    masks_queries_logits [B, Q, H / 4, W / 4]), as transformers names them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values)
        return outputs.class_queries_logits, outputs.masks_queries_logits


def load_hf_model(folder: str | Path) -> nn.Module:
    """A transformers ``save_pretrained`` folder of a supported architecture, in eval mode.

    Raises:
        InputError: transformers is not installed, the folder holds no such model, or another
            architecture (named in the message).
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputError(f"{folder}: no config.json; expected a transformers save_pretrained "
                         "folder")
    try:
        architectures = json.loads(config_file.read_text()).get("architectures") or []
    except json.JSONDecodeError as error:
        raise InputError(f"{config_file}: not JSON ({error})") from error
    if not set(architectures) & set(SUPPORTED_ARCHITECTURES):
        raise InputError(f"{folder}: architecture {', '.join(architectures) or 'unknown'} is not "
                         f"supported; softmask converts {' and '.join(SUPPORTED_ARCHITECTURES)}")
    try:
        import transformers
    except ImportError as error:
        raise InputError("--hf-model needs transformers: pip install 'softmask[hf]'") from error
    cls = getattr(transformers, next(a for a in architectures if a in SUPPORTED_ARCHITECTURES))
    return cls.from_pretrained(folder).eval()


def export_mask2former(
    model: nn.Module, height: int, width: int, out_dir: str | Path, source: str = ""
) -> Path:
    """Convert ``model`` in place (``convert_mask2former``) and export it to
    ``out_dir/model.onnx`` (input ``pixel_values`` [1, 3, height, width]; outputs
    ``OUTPUT_NAMES``) with ``manifest.json``. The folder is written whole or not at all.
    Returns ``out_dir``.

    Raises:
        InputError: an unsupported model, a non-positive size, or an existing non-empty folder.
        ExportError: the exporter failed.
    """
    from softmask.export.onnx_export import export_onnx
    from softmask.ops.onnx_op import DOMAIN, OP_TYPE

    if height < 1 or width < 1:
        raise InputError(f"--height and --width must be positive, got {height}x{width}")
    layers = len(_decoder_layers(model))
    convert_mask2former(model)
    if hasattr(model, "set_attn_implementation"):
        # The backbone's SDPA attention does not survive the exporter's decompositions
        # (torch 2.13: "Cannot view a tensor ..."); the eager path computes the same.
        model.set_attn_implementation("eager")
    wrapped = _Outputs(model).eval()
    example = torch.zeros(1, 3, height, width)
    with atomic_dir(out_dir) as staging:
        path = export_onnx(wrapped, (example,), staging / "model.onnx",
                           input_names=["pixel_values"], output_names=list(OUTPUT_NAMES))
        import onnx

        nodes = sum(1 for n in onnx.load(str(path), load_external_data=False).graph.node
                    if n.op_type == OP_TYPE and n.domain == DOMAIN)
        if nodes != layers:
            raise ExportError(f"expected one {OP_TYPE} node per decoder layer ({layers}), "
                              f"found {nodes}")
        manifest = {
            "format": "softmask-hf-export", "format_version": 1, "softmask_version": __version__,
            "architecture": type(model).__name__, "source": source,
            "inputs": {"pixel_values": [1, 3, height, width]}, "outputs": list(OUTPUT_NAMES),
            "op_nodes": nodes, "mask_mode": "hard",
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(out_dir)
