"""Training: losses, clip augmentation, weak supervision's data use, determinism and resume."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from softmask.data.synthetic import generate_video
from softmask.errors import InputError
from softmask.model import build_model
from softmask.model.checkpoint import read_payload
from softmask.train import TrainConfig, train
from softmask.train.clips import random_affine, static_clip, video_clip, warp
from softmask.train.cycles import cyclic_losses
from softmask.train.losses import grouped_log_probs, segmentation_loss
from softmask.train.trainer import MIN_LR_FRACTION, learning_rate


def test_background_channels_are_merged():
    # Two background channels and one object with logits 0, 0, log 2: softmax 1/4, 1/4, 1/2.
    logits = torch.tensor([0.0, 0.0, math.log(2.0)]).view(1, 3, 1, 1)
    probs = grouped_log_probs(logits, 2).exp().flatten()
    torch.testing.assert_close(probs, torch.tensor([0.5, 0.5]))


def test_segmentation_loss_hand_computed():
    # Two pixels; background (1 channel) and 1 object. Pixel 0: p(obj) = 0.5; pixel 1: p(obj) =
    # 0.8. Target: pixel 0 background, pixel 1 object.
    p = torch.tensor([0.5, 0.8])
    logits = torch.stack([torch.zeros(2), torch.log(p / (1 - p))]).view(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    ce, dice = segmentation_loss(logits, target, torch.tensor([[True]]), 1)
    assert ce.item() == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)
    # Dice (eps 1): background: inter 0.5, sums 0.7 + 1; object: inter 0.8, sums 1.3 + 1.
    bg = (2 * 0.5 + 1) / (0.5 + 0.2 + 1 + 1)
    obj = (2 * 0.8 + 1) / (0.5 + 0.8 + 1 + 1)
    assert dice.item() == pytest.approx(1 - (bg + obj) / 2)


def test_invalid_object_slots_are_left_out_of_dice():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    _, with_slot = segmentation_loss(logits, target, torch.tensor([[True, True]]), 1)
    _, without = segmentation_loss(logits, target, torch.tensor([[True, False]]), 1)
    assert with_slot.item() != pytest.approx(without.item())


def test_warp_moves_image_and_labels_together():
    labels = torch.zeros(64, 96, dtype=torch.long)
    labels[20:40, 30:60] = 2
    image = (labels == 2).float()[None].repeat(3, 1, 1)
    theta = random_affine(np.random.default_rng(3))
    warped, warped_labels = warp(image, labels, theta)
    marked = warped[0] > 0.5
    on = warped_labels == 2
    iou = (marked & on).sum() / (marked | on).sum()
    assert iou > 0.9
    assert set(warped_labels.unique().tolist()) <= {0, 2}


def test_clips_have_three_aligned_frames():
    video = generate_video(5, 64, 96, 8)
    rng = np.random.default_rng(0)
    for clip in (video_clip(video, rng), static_clip(video, rng)):
        assert clip.images.shape == (3, 3, 64, 96) and clip.labels.shape == (3, 64, 96)
    first = static_clip(video, np.random.default_rng(1))
    assert (first.labels[0] > 0).any()


def _batch(seed=0):
    clips = [video_clip(generate_video(s, 64, 96, 6), np.random.default_rng(s)) for s in (1, 2)]
    return torch.stack([c.images for c in clips]), torch.stack([c.labels for c in clips])


def test_weak_supervision_reads_only_the_reference_frame():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    images, labels = _batch()
    garbage = labels.clone()
    garbage[:, 1:] = torch.randint(0, 6, garbage[:, 1:].shape)
    a = cyclic_losses(model, images, labels, 5, full_supervision=False)
    b = cyclic_losses(model, images, garbage, 5, full_supervision=False)
    assert a.total.item() == b.total.item()
    c = cyclic_losses(model, images, garbage, 5, full_supervision=True)
    d = cyclic_losses(model, images, labels, 5, full_supervision=True)
    assert c.total.item() != d.total.item(), "full supervision does read frames 1 and 2"


def _config(tmp_path, name, steps):
    return TrainConfig(out_dir=str(tmp_path / name), steps=steps, batch_size=2, height=64,
                       width=96, frames_per_video=6, videos=3, checkpoint_every=2,
                       static_fraction=0.5, seed=7, threads=1)


def test_training_is_deterministic_and_resume_equals_uninterrupted(tmp_path):
    straight = train(_config(tmp_path, "a", 4))
    again = train(_config(tmp_path, "b", 4))
    train(_config(tmp_path, "c", 2))
    resumed = train(_config(tmp_path, "c", 4))
    loads = [torch.load(p, weights_only=False) for p in (straight, again, resumed)]
    latest = [torch.load(tmp_path / n / "latest.pth", weights_only=False) for n in "abc"]
    losses = [[r["loss"] for r in x["history"]] for x in latest]
    assert len(losses[0]) == 4
    assert losses[0] == losses[1] == losses[2]
    for name, tensor in loads[0]["model"].items():
        torch.testing.assert_close(tensor, loads[2]["model"][name], rtol=0, atol=0, msg=name)


def test_cosine_schedule_decays_from_lr_to_its_floor():
    config = TrainConfig(out_dir="unused", steps=100, lr=1e-3, lr_schedule="cosine")
    rates = [learning_rate(config, s) for s in range(101)]
    assert rates[0] == pytest.approx(1e-3)
    assert rates[50] == pytest.approx(1e-3 * (1 + MIN_LR_FRACTION) / 2)
    assert rates[100] == pytest.approx(1e-3 * MIN_LR_FRACTION)
    assert all(a > b for a, b in itertools.pairwise(rates))
    constant = TrainConfig(out_dir="unused", steps=100, lr=1e-3)
    assert {learning_rate(constant, s) for s in range(101)} == {1e-3}


def test_training_applies_the_schedule_to_the_optimizer(tmp_path):
    config = dataclasses.replace(_config(tmp_path, "cos", 3), lr_schedule="cosine")
    train(config)
    saved = torch.load(tmp_path / "cos" / "latest.pth", weights_only=False)
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(learning_rate(config, 2))


def test_unknown_schedule_is_rejected():
    with pytest.raises(InputError, match="lr_schedule"):
        TrainConfig(out_dir="unused", lr_schedule="linear")


def test_an_interrupted_checkpoint_save_keeps_the_earlier_one(tmp_path, monkeypatch):
    train(_config(tmp_path, "c", 2))

    def save_half_then_interrupt(obj, target, *args, **kwargs):
        """An interrupt arriving in the middle of torch.save: some bytes are out, then it ends."""
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as stream:
                stream.write(b"PK\x03\x04 half a checkpoint")
        else:
            target.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path, "c", 4))
    monkeypatch.undo()
    assert read_payload(tmp_path / "c" / "latest.pth")["step"] == 2
    assert not list((tmp_path / "c").glob(".*")), "no partial file left"


class _RunsCode:
    """Pickles as a call to Path.touch: what a planted latest.pth could run on resume."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_refuses_a_checkpoint_that_pickles_code(tmp_path):
    out = tmp_path / "planted"
    out.mkdir()
    marker = tmp_path / "code-ran"
    torch.save({"model": {}, "step": 1, "hook": _RunsCode(marker)}, out / "latest.pth")
    with pytest.raises(InputError, match=r"latest\.pth: refused by torch\.load\(weights_only"):
        train(_config(tmp_path, "planted", 2))
    assert not marker.exists(), "resume ran code from the output folder"
