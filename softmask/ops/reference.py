"""Reference soft-masked attention: plain torch, float64-capable. The oracle of every test.

Math (``docs/reference/soft_masked_attention.md``), per batch b, head h, query i, key s:

    logit[b,h,i,s] = q[b,h,i,:] . k[b,h,s,:] / sqrt(D) - alpha[h] * (1 - M[b,i,s])
    logit[b,h,i,s] = -inf                            where key_padding_mask[b,s]
    out[b,h,i,:]   = sum_s softmax_s(logit[b,h,i,:]) * v[b,h,s,:]

Fully padded rows: when every key of a batch element is padded, softmax is undefined; this project
defines the output of such rows as zeros (and their gradients as zeros), in every implementation.

Hard mode (Mask2Former's masked attention, the limit alpha -> inf of a binary mask): key s is
allowed for query i where ``M[b,i,s]`` is True (a bool mask) or ``M[b,i,s] >= threshold`` (a
floating mask: probabilities with 0.5, logits with 0.0); blocked keys get -inf and alpha is not
used. A row whose keys are all blocked attends to every key (Mask2Former's rule), padded keys
excepted. No gradient flows into the mask or alpha in hard mode.

Half-precision inputs are computed in float32 and the result cast back, as the fused kernel does
(fp16/bf16 in, fp32 accumulate).
"""

from __future__ import annotations

import math

import torch

from softmask.ops.validation import check_inputs


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, H*D] -> [B, H, N, D]."""
    b, n, e = x.shape
    return x.reshape(b, n, heads, e // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, N, D] -> [B, N, H*D]."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def hard_mask(mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """Hard mode's bool mask [B, I, S] (True = attend): ``mask`` itself when bool, else
    ``mask >= threshold``."""
    return mask if mask.dtype == torch.bool else mask >= threshold


def allowed_keys(
    mask: torch.Tensor, threshold: float, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Hard mode: bool [B, I, S], True where query i attends to key s.

    Allowed: ``hard_mask(mask, threshold)``, except that a row with no allowed unpadded key
    allows every key (padding is applied after, by ``attention_probs``).
    """
    keep = hard_mask(mask, threshold)
    unpadded = keep if key_padding_mask is None else keep & ~key_padding_mask[:, None, :]
    return keep | ~unpadded.any(dim=-1, keepdim=True)


def attention_probs(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    hard: bool = False,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Softmax attention weights [B, H, I, S] in the compute dtype; rows fully padded are zero.

    Inputs are assumed validated (see ``check_inputs``) and already in the compute dtype (a hard
    mode mask may stay bool).
    """
    q = _split_heads(query, num_heads)
    k = _split_heads(key, num_heads)
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale
    if hard:
        blocked = ~allowed_keys(mask, threshold, key_padding_mask)
        logits = logits.masked_fill(blocked.unsqueeze(1), float("-inf"))
    else:
        logits = logits - alpha.view(1, -1, 1, 1) * (1.0 - mask.unsqueeze(1))
    if key_padding_mask is None:
        return torch.softmax(logits, dim=-1)
    padded = key_padding_mask[:, None, None, :]
    has_key = (~padded).any(dim=-1, keepdim=True)
    # A row with no key would give NaN; give it finite logits, then zero its weights.
    logits = logits.masked_fill(padded & has_key, float("-inf"))
    return torch.softmax(logits, dim=-1) * has_key


def soft_masked_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    hard: bool = False,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Soft-masked attention, reference implementation.

    Args:
        query: [B, I, E] queries (E = num_heads * head_dim).
        key, value: [B, S, E], same dtype as query.
        mask: [B, I, S] soft mask in [0, 1], shared by all heads (any floating dtype); in hard
            mode also bool (True = attend).
        alpha: [H] per-head mask scale (HODOR default [32, 32, 16, 16, 8, 8, 4, 4]); unused in
            hard mode.
        num_heads: H.
        key_padding_mask: optional [B, S] bool, True marks a padded key.
        hard: Mask2Former's masked attention instead of the soft mask (module docstring).
        threshold: hard mode, floating mask: keys with ``mask >= threshold`` are attended.

    Returns:
        [B, I, E] in query's dtype. Differentiable (plain autograd) in query, key, value, and in
        soft mode mask and alpha.
    """
    check_inputs(query, key, value, mask, alpha, num_heads, key_padding_mask, hard)
    ct = _compute_dtype(query.dtype)
    m = mask if hard else mask.to(ct)
    probs = attention_probs(
        query.to(ct), key.to(ct), m, alpha.to(ct), num_heads, key_padding_mask, hard, threshold
    )
    out = torch.matmul(probs, _split_heads(value.to(ct), num_heads))
    return _merge_heads(out).to(query.dtype)


def soft_masked_attention_backward(
    grad_out: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    hard: bool = False,
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Analytic gradients of ``soft_masked_attention`` (recomputes the weights, like a fused kernel).

    With P = softmax(logit), O = P V and dO the incoming gradient, per (b, h):
        dV = P^T dO;  dP = dO V^T;  dlogit = P * (dP - rowsum(dO * O))
        dQ = dlogit K / sqrt(D);  dK = dlogit^T Q / sqrt(D)
        dM[b,i,s] = sum_h alpha[h] dlogit[b,h,i,s];  dalpha[h] = sum_{b,i,s} dlogit (M - 1)

    Returns:
        (d_query, d_key, d_value, d_mask, d_alpha), each in its input's dtype and shape.
        Padded keys and fully padded rows get zero gradient (P is zero there). Hard mode: d_mask
        is None for a bool mask, else zeros, and d_alpha is zeros (the logits do not use them).
    """
    ct = _compute_dtype(query.dtype)
    q, k, v = (_split_heads(t.to(ct), num_heads) for t in (query, key, value))
    m, a = (mask if hard else mask.to(ct)), alpha.to(ct)
    probs = attention_probs(
        query.to(ct), key.to(ct), m, a, num_heads, key_padding_mask, hard, threshold
    )
    d_o = _split_heads(grad_out.to(ct), num_heads)
    out = torch.matmul(probs, v)
    d_v = torch.matmul(probs.transpose(-1, -2), d_o)
    d_p = torch.matmul(d_o, v.transpose(-1, -2))
    d_logit = probs * (d_p - (d_o * out).sum(dim=-1, keepdim=True))
    scale = 1.0 / math.sqrt(q.shape[-1])
    d_q = torch.matmul(d_logit, k) * scale
    d_k = torch.matmul(d_logit.transpose(-1, -2), q) * scale
    if hard:
        d_mask = None if mask.dtype == torch.bool else torch.zeros_like(mask)
        d_alpha = torch.zeros_like(alpha)
    else:
        d_mask = (d_logit * a.view(1, -1, 1, 1)).sum(dim=1).to(mask.dtype)
        d_alpha = (d_logit * (m.unsqueeze(1) - 1.0)).sum(dim=(0, 2, 3)).to(alpha.dtype)
    return (
        _merge_heads(d_q).to(query.dtype),
        _merge_heads(d_k).to(key.dtype),
        _merge_heads(d_v).to(value.dtype),
        d_mask,
        d_alpha,
    )
