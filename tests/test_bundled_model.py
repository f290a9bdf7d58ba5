"""The bundled tiny model: it loads by name, tracks objects, and meets the J&F bar of its model
card on a held-out synthetic set generated here (the same set as docs/model-card.md's commands).
"""

from __future__ import annotations

import numpy as np
import pytest

from softmask.data.synthetic import generate_video, write_davis_dataset
from softmask.eval.davis import region_similarity
from softmask.eval.davis_run import evaluate_model_on_davis
from softmask.model import bundled_checkpoint_path, load_checkpoint, segment_video
from softmask.train.trainer import TRAIN_SEED_BASE

# The model card's held-out set: 20 videos x 24 frames of 128x224 from seeds 900,000-900,019.
HELD_OUT_FIRST_SEED, HELD_OUT_VIDEOS = 900_000, 20
# The bar of the issue that asked for the bundled model (J&F-Mean on >= 20 held-out videos).
JF_BAR = 0.80


def test_bundled_checkpoint_is_small_and_loads_by_name():
    path = bundled_checkpoint_path("tiny")
    assert path.is_file()
    assert path.stat().st_size < 10 * 2**20
    model = load_checkpoint("tiny")
    assert model.config.backbone == "tiny_cnn"
    assert not model.training


def test_bundled_model_tracks_objects_better_than_holding_the_first_mask():
    # Seed 900001: a held-out video (training seeds start at 1,000,000) with 3 objects, 12 frames
    # of 128x224; holding the first mask scores J = 0.21 on it.
    video = generate_video(900001, 128, 224, 12)
    model = load_checkpoint("tiny")
    labels = segment_video(model, video.frames, {0: video.labels[0]})
    assert labels.shape == video.labels.shape and labels.dtype == np.uint8
    objects = [k for k, t in video.first_frames.items() if t == 0]
    model_j = np.mean([region_similarity(labels[t] == k, video.labels[t] == k)
                       for t in range(1, 12) for k in objects])
    # Trivial baseline: repeat the first frame's mask (objects move, so it decays).
    held_j = np.mean([region_similarity(video.labels[0] == k, video.labels[t] == k)
                      for t in range(1, 12) for k in objects])
    # An untrained model scores about 0.01 here (it does not follow the objects).
    assert model_j > held_j + 0.2


@pytest.mark.slow  # 20 videos x 24 frames: the tracking check above is its quick twin
def test_bundled_model_meets_the_jf_bar_on_a_freshly_generated_held_out_set(tmp_path):
    assert HELD_OUT_FIRST_SEED + HELD_OUT_VIDEOS <= TRAIN_SEED_BASE, "held-out seeds never train"
    root = write_davis_dataset(tmp_path / "heldout", HELD_OUT_VIDEOS, HELD_OUT_FIRST_SEED,
                               height=128, width=224, frames=24)
    scores = evaluate_model_on_davis(load_checkpoint("tiny"), root, tmp_path / "results")
    assert scores["J&F-Mean"] >= JF_BAR, {k: v for k, v in scores.items() if k != "per_object"}
