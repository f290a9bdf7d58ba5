"""Segmentation losses on HODOR's output channels: multi-class cross-entropy + Dice.

The model predicts [catch-all, Qb background cells, N objects]; the ground truth knows only
"background" and objects, so the background classes are merged (their probabilities summed) into
one class before the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Smoothing of the Dice ratio (keeps empty classes finite).
DICE_EPS = 1.0


def grouped_log_probs(logits: torch.Tensor, num_background: int) -> torch.Tensor:
    """logits [B, K, H, W] (first ``num_background`` channels are background) ->
    log-probabilities [B, 1 + N, H, W] of (background, object 1..N)."""
    log_probs = F.log_softmax(logits, dim=1)
    background = torch.logsumexp(log_probs[:, :num_background], dim=1, keepdim=True)
    return torch.cat((background, log_probs[:, num_background:]), dim=1)


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, num_background: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, Dice loss) of one frame's prediction.

    Args:
        logits: [B, K, H, W], K = num_background + N.
        target: [B, H, W] long: 0 background, k = object k (1..N); objects not in ``valid`` must
            already be 0.
        valid: [B, N] bool, object slots that exist in this sample (others are left out of Dice).
        num_background: background channels (1 catch-all + Qb cells).

    Returns:
        Mean cross-entropy over pixels; 1 - mean Dice over (background + valid objects).
    """
    log_probs = grouped_log_probs(logits, num_background)
    ce = F.nll_loss(log_probs, target)
    probs = log_probs.exp()
    onehot = F.one_hot(target, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum(dim=(2, 3))
    total = probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))
    dice = (2 * inter + DICE_EPS) / (total + DICE_EPS)  # [B, 1 + N]
    counted = torch.cat((torch.ones_like(valid[:, :1]), valid), dim=1).to(dice.dtype)
    dice_loss = 1 - (dice * counted).sum() / counted.sum()
    return ce, dice_loss
