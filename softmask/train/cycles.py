"""HODOR's cyclic training step on a batch of 3-frame clips.

Descriptors come from the reference frame 0 and its ground truth. Cycle 0->1->0 decodes frame 1
with them, encodes frame 1 from its (detached) predicted soft masks, and re-segments frame 0.
Cycle 0->1->2->1->0 goes two frames further and back. Weak supervision ("sparse video") scores
only the two re-segmentations of frame 0 against frame 0's ground truth: the only annotation it
reads. Full supervision also scores the forward predictions of frames 1 and 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from softmask.model.hodor import HodorModel
from softmask.model.video import annotate
from softmask.train.losses import segmentation_loss


@dataclass
class StepLosses:
    """Loss terms of one batch (scalars); ``total`` is what is optimised."""

    total: torch.Tensor
    cycle_ce: torch.Tensor
    cycle_dice: torch.Tensor
    forward_ce: torch.Tensor
    forward_dice: torch.Tensor


def _encode_prediction(model: HodorModel, logits: torch.Tensor, f8: torch.Tensor,
                       valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Descriptors of a decoded frame from its soft masks, as ``softmask.model.video.step`` makes
    them (softmax at stride 4, object channels resized to stride 8); masks detached."""
    probs = logits.softmax(dim=1)[:, 1 + model.num_bg :]
    masks = F.interpolate(probs, size=f8.shape[-2:], mode="bilinear", align_corners=False)
    return model.encode(f8, masks.detach(), fg_valid=valid)


def _decode(model, f4, f8, fg, bg, valid) -> torch.Tensor:
    """Logits [B, 1 + Qb + N, H, W] at input size from one frame's descriptors."""
    b = fg.shape[0]
    bg_valid = torch.ones(b, model.num_bg, 1, dtype=torch.bool, device=fg.device)
    logits = model.decode(f4, f8, fg[:, :, None], bg[:, :, None], valid[:, :, None], bg_valid)
    size = (f4.shape[-2] * 4, f4.shape[-1] * 4)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def cyclic_losses(
    model: HodorModel, images: torch.Tensor, labels: torch.Tensor, num_objects: int,
    full_supervision: bool,
) -> StepLosses:
    """Losses of one batch.

    Args:
        images: [B, 3, 3, H, W] normalised clips (frame 0 = reference); H, W multiples of 32.
        labels: [B, 3, H, W] long; in weak mode only ``labels[:, 0]`` is read.
        num_objects: object slots N (ids above N are ignored).
        full_supervision: also score the predictions of frames 1 and 2.
    """
    b, t = images.shape[:2]
    f4, f8 = model.features(images.flatten(0, 1))
    f4, f8 = f4.unflatten(0, (b, t)), f8.unflatten(0, (b, t))
    ids = torch.arange(1, num_objects + 1, device=labels.device)
    ref = labels[:, 0]
    ref_masks = (ref[:, None] == ids[None, :, None, None]).float()  # [B, N, H, W]
    present = ref_masks.flatten(2).amax(dim=2) > 0
    ann = annotate(model, f8[:, 0], ref_masks, present)
    valid = ann.valid

    def target(frame_labels: torch.Tensor) -> torch.Tensor:
        # Objects not encoded on frame 0 (absent, too small, entering later) are background.
        hit = (frame_labels[:, None] == ids[None, :, None, None]) & valid[:, :, None, None]
        return (hit.long() * ids[None, :, None, None]).sum(dim=1)

    nb = 1 + model.num_bg
    logits1 = _decode(model, f4[:, 1], f8[:, 1], ann.fg, ann.bg, valid)
    fg1, bg1 = _encode_prediction(model, logits1, f8[:, 1], valid)
    back0 = _decode(model, f4[:, 0], f8[:, 0], fg1, bg1, valid)
    logits2 = _decode(model, f4[:, 2], f8[:, 2], fg1, bg1, valid)
    fg2, bg2 = _encode_prediction(model, logits2, f8[:, 2], valid)
    again1 = _decode(model, f4[:, 1], f8[:, 1], fg2, bg2, valid)
    fg1b, bg1b = _encode_prediction(model, again1, f8[:, 1], valid)
    back0_long = _decode(model, f4[:, 0], f8[:, 0], fg1b, bg1b, valid)

    ref_target = target(ref)
    terms = [segmentation_loss(x, ref_target, valid, nb) for x in (back0, back0_long)]
    cycle_ce = sum(ce for ce, _ in terms) / len(terms)
    cycle_dice = sum(d for _, d in terms) / len(terms)
    zero = cycle_ce.new_zeros(())
    forward_ce, forward_dice = zero, zero
    if full_supervision:
        fwd = [segmentation_loss(x, target(labels[:, k]), valid, nb)
               for x, k in ((logits1, 1), (logits2, 2))]
        forward_ce = sum(ce for ce, _ in fwd) / len(fwd)
        forward_dice = sum(d for _, d in fwd) / len(fwd)
    total = cycle_ce + cycle_dice + forward_ce + forward_dice
    return StepLosses(total, cycle_ce, cycle_dice, forward_ce, forward_dice)
