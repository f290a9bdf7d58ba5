"""Synthetic VOS videos: determinism, object ids, late objects, the DAVIS layout on disk."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from softmask.data.synthetic import generate_video, write_davis_dataset
from softmask.errors import InputError


def test_same_seed_same_video_and_different_seed_differs():
    a = generate_video(7, 48, 64, 6)
    b = generate_video(7, 48, 64, 6)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.frames, generate_video(8, 48, 64, 6).frames)


@pytest.mark.parametrize("seed", range(8))
def test_video_shapes_ids_and_first_frames(seed):
    v = generate_video(seed, 64, 96, 10)
    assert v.frames.shape == (10, 64, 96, 3) and v.frames.dtype == np.uint8
    assert v.labels.shape == (10, 64, 96) and v.labels.dtype == np.uint8
    assert 1 <= v.num_objects <= 5
    assert set(np.unique(v.labels)) <= set(range(v.num_objects + 1))
    assert sorted(v.first_frames) == list(range(1, v.num_objects + 1))
    firsts = [v.first_frames[k] for k in sorted(v.first_frames)]
    assert firsts == sorted(firsts), "ids follow first appearance"
    for obj, t in v.first_frames.items():
        assert (v.labels[t] == obj).any()
        assert not (v.labels[:t] == obj).any()


def test_some_video_has_an_object_entering_mid_video():
    late = [generate_video(s, 48, 64, 12) for s in range(12)]
    entering = [v for v in late if max(v.first_frames.values()) > 0]
    assert entering, "enter_probability 0.3 over 12 seeds should give a late object"
    v = entering[0]
    obj, t = max(v.first_frames.items(), key=lambda kv: kv[1])
    annotations = v.annotations()
    assert set(annotations) == {0, t}
    assert set(np.unique(annotations[t])) == {0, obj}


def test_objects_are_visible_in_the_frames():
    v = generate_video(3, 96, 128, 4)
    for obj in v.first_frames:
        inside = v.labels[0] == obj
        if inside.sum() > 20:
            # Object pixels differ from the background mean (objects are textured/coloured).
            assert np.abs(v.frames[0][inside].mean(0) - v.frames[0][v.labels[0] == 0].mean(0)).max() > 5


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="frames >= 2"):
        generate_video(0, frames=1)


def test_davis_layout_on_disk(tmp_path):
    root = write_davis_dataset(tmp_path / "synth", videos=2, seed=100, height=48, width=64,
                               frames=5, subset="val")
    assert (root / "ImageSets" / "2017" / "val.txt").read_text().split() == ["synth100", "synth101"]
    seq = root / "JPEGImages" / "480p" / "synth100"
    assert sorted(p.name for p in seq.iterdir()) == [f"{t:05d}.jpg" for t in range(5)]
    png = Image.open(root / "Annotations" / "480p" / "synth100" / "00000.png")
    assert png.mode == "P"
    np.testing.assert_array_equal(np.array(png), generate_video(100, 48, 64, 5).labels[0])
    write_davis_dataset(tmp_path / "synth", videos=1, seed=100, height=48, width=64, frames=5)
    assert (root / "ImageSets" / "2017" / "val.txt").read_text().split() == ["synth100", "synth101"]
