"""HODOR's video loop (softmask.model.segment_video and its per-frame steps), on the tiny config.

Several tests replace the decoder with a scripted one whose logits are spatially uniform: upsampling
then leaves them unchanged, so the expected labels and probabilities follow by hand from softmax.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from softmask.errors import InputError
from softmask.model import segment_video
from softmask.model.decoder import INVALID_LOGIT
from softmask.model.video import (
    PIXEL_MEAN_RGB,
    PIXEL_STD_RGB,
    frame_geometry,
    prepare_annotation,
    preprocess_frame,
)

QB = 9  # background descriptors of the tiny config


def _video(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _box(h: int, w: int, label: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    out[y0:y1, x0:x1] = label
    return out


class DecodeSpy:
    """Wraps model.decode: records its validity inputs; optionally returns scripted logits."""

    def __init__(self, model, script=None):
        self.real = model.decode
        self.script = script  # call index -> per-channel logits [1 + QB + N] (uniform in space)
        self.calls: list[dict] = []

    def __call__(self, f4, f8, fg, bg, fg_valid=None, bg_valid=None):
        self.calls.append(
            {"fg_valid": fg_valid.clone(), "bg_valid": bg_valid.clone(), "T": fg.shape[2]}
        )
        logits = self.real(f4, f8, fg, bg, fg_valid, bg_valid)
        if self.script is None:
            return logits
        values = torch.as_tensor(self.script[len(self.calls) - 1], dtype=logits.dtype).clone()
        # The decoder's contract (tested in test_model_parts): objects with no valid step get
        # INVALID_LOGIT.
        values[1 + QB :][~fg_valid[0].any(dim=1)] = INVALID_LOGIT
        return values.view(1, -1, 1, 1).expand_as(logits).clone()


def _logits(catch_all: float, objects: list[float], bg: float = -5.0) -> list[float]:
    return [catch_all] + [bg] * QB + objects


# ---------------------------------------------------------------- preprocessing


def test_frame_geometry_follows_hodors_resize_rule():
    g = frame_geometry(480, 854, None, None)
    assert g.resized == (480, 854) and g.padded == (480, 864)
    g = frame_geometry(480, 854, 240, 400)  # short side 240 would make the long side 427 > 400
    assert g.resized == (round(480 * 400 / 854), 400) and g.padded == (256, 416)
    g = frame_geometry(100, 50, 64, None)
    assert g.resized == (128, 64) and g.padded == (128, 64)


def test_preprocess_normalises_rgb_and_zero_pads():
    frame = torch.zeros(40, 50, 3, dtype=torch.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30
    image = preprocess_frame(frame, frame_geometry(40, 50, None, None))
    assert image.shape == (1, 3, 64, 64)
    for c, value in enumerate((10, 20, 30)):
        expected = (value - PIXEL_MEAN_RGB[c]) / PIXEL_STD_RGB[c]
        assert torch.allclose(image[0, c, :40, :50], torch.tensor(expected))
    assert (image[:, :, 40:] == 0).all() and (image[:, :, :, 50:] == 0).all()
    # HODOR's numbers: BGR means 103.53, 116.28, 123.675 and stds 57.375, 57.12, 58.395.
    assert PIXEL_MEAN_RGB[::-1] == (103.53, 116.28, 123.675)
    assert PIXEL_STD_RGB[::-1] == (57.375, 57.12, 58.395)


def test_prepare_annotation_one_hot_resize_and_pad():
    labels = torch.from_numpy(_box(40, 40, 1, 0, 20, 0, 20) + _box(40, 40, 3, 20, 40, 20, 40))
    masks, annotated = prepare_annotation(labels, 3, frame_geometry(40, 40, 20, None))
    assert annotated.tolist() == [[True, False, True]]
    assert masks.shape == (1, 3, 32, 32)
    assert masks[0, 0, :10, :10].all() and masks[0, 0].sum() == 100
    assert masks[0, 2, 10:20, 10:20].all() and masks[0, 2].sum() == 100
    assert masks[0, 1].sum() == 0 and masks[:, :, 20:].sum() == 0


# ---------------------------------------------------------------- the loop


def test_frames_before_the_first_annotation_are_all_zero(model, monkeypatch):
    calls = []
    real = model.features
    monkeypatch.setattr(model, "features", lambda x: calls.append(1) or real(x))
    frames = _video(5, 40, 48)
    ann = {2: _box(40, 48, 1, 5, 25, 5, 30)}
    labels, probs = segment_video(model, frames, ann, temporal_window=3, return_probs=True)
    assert labels.shape == (5, 40, 48) and labels.dtype == np.uint8
    assert probs.shape == (5, 1, 40, 48) and probs.dtype == np.float32
    assert (labels[:2] == 0).all() and (probs[:2] == 0).all()
    assert len(calls) == 3  # no compute for frames 0 and 1


def test_first_annotated_frame_runs_only_the_encoder(model, monkeypatch):
    spy = DecodeSpy(model)
    monkeypatch.setattr(model, "decode", spy)
    frames = _video(3, 64, 64)
    ann = {0: _box(64, 64, 1, 8, 40, 8, 40) + _box(64, 64, 2, 40, 60, 40, 60)}
    labels, probs = segment_video(model, frames, ann, temporal_window=2, return_probs=True)
    assert len(spy.calls) == 2  # frames 1 and 2 only
    assert np.array_equal(labels[0], ann[0])
    assert np.array_equal(probs[0, 0], (ann[0] == 1).astype(np.float32))


def test_window_and_validity_flags_seen_by_the_decoder(model, monkeypatch):
    spy = DecodeSpy(model)
    monkeypatch.setattr(model, "decode", spy)
    frames = _video(5, 32, 32)
    ann = {0: _box(32, 32, 1, 0, 16, 0, 16), 2: _box(32, 32, 2, 16, 32, 16, 32)}
    segment_video(model, frames, ann, temporal_window=2)
    # Window W=2 past frames + the current frame's slot (annotated objects only): T = 3.
    assert [c["T"] for c in spy.calls] == [3, 3, 3, 3]
    fg = [c["fg_valid"][0].tolist() for c in spy.calls]
    bg = [c["bg_valid"][0, 0].tolist() for c in spy.calls]
    # frame 1: only frame 0 (object 1) in the past; nothing annotated now.
    assert fg[0] == [[False, True, False], [False, False, False]] and bg[0] == [False, True, False]
    # frame 2: object 2 annotated now -> its current slot is valid; the current slot's
    # background never is.
    assert fg[1] == [[True, True, False], [False, False, True]] and bg[1] == [True, True, False]
    # frame 3: past frames 1, 2 (object 2 encoded with the rest at frame 2).
    assert fg[2] == [[True, True, False], [False, True, False]]
    # frame 4: frame 1 left the window.
    assert fg[3] == [[True, True, False], [True, True, False]]


def test_object_appearing_mid_video_overrides_prediction(model, monkeypatch):
    # Object 1 wins everywhere by prediction; object 2 is annotated at frame 2 on a box.
    script = [_logits(0.0, [3.0, 0.0])] * 3
    monkeypatch.setattr(model, "decode", DecodeSpy(model, script))
    encoded = []
    real_encoder = model.encoder.forward
    monkeypatch.setattr(
        model.encoder,
        "forward",
        lambda f8, fg, bg, valid=None: encoded.append((fg, bg)) or real_encoder(f8, fg, bg, valid),
    )
    box = _box(64, 64, 2, 16, 48, 16, 48)
    ann = {0: _box(64, 64, 1, 0, 32, 0, 32), 2: box}
    labels, probs = segment_video(
        model, _video(4, 64, 64), ann, temporal_window=3, return_probs=True
    )
    assert (probs[:2, 1] == 0).all()  # object 2 has no probability before it appears
    inside = box == 2
    assert (labels[2][inside] == 2).all() and (labels[2][~inside] == 1).all()
    assert (probs[2, 1][inside] == 1).all() and (
        probs[2, 1][~inside] == 0
    ).all()  # full replacement
    assert (probs[2, 0][inside] == 0).all()
    # Encoder calls: frame 0 (annotation), frame 1, frame 2's annotation, frame 2 (soft masks);
    # none on the last frame.
    assert len(encoded) == 4
    fg_masks, bg_masks = encoded[3]
    p = torch.softmax(torch.tensor(script[0]), 0)
    box8 = torch.zeros(8, 8)
    box8[2:6, 2:6] = 1.0
    torch.testing.assert_close(fg_masks[0, 1], box8)
    torch.testing.assert_close(fg_masks[0, 0], p[1 + QB] * (1 - box8))
    cells = torch.zeros(8, 8)
    cells[:2, :2] = 1.0  # background cell 0 of a 3x3 grid on an 8x8 map: rows/cols 0..1
    torch.testing.assert_close(bg_masks[0, 0], cells * (1 - fg_masks[0].sum(0)))


def test_uniform_logits_give_softmax_probabilities_and_label_mapping(model, monkeypatch):
    script = [
        _logits(2.0, [0.0, 1.0]),  # catch-all wins -> 0
        _logits(0.0, [0.5, 2.5]),  # object 2 wins
        _logits(0.0, [1.5, -1.0], bg=4.0),  # a background cell wins -> 0
    ]
    monkeypatch.setattr(model, "decode", DecodeSpy(model, script))
    ann = {0: _box(40, 72, 1, 0, 20, 0, 30) + _box(40, 72, 2, 20, 40, 30, 60)}
    labels, probs = segment_video(model, _video(4, 40, 72), ann, return_probs=True)
    for t, expected_label in zip((1, 2, 3), (0, 2, 0)):
        p = torch.softmax(torch.tensor(script[t - 1]), 0)[1 + QB :].numpy()
        assert (labels[t] == expected_label).all()
        np.testing.assert_allclose(probs[t, :, 0, 0], p, rtol=1e-5)
        np.testing.assert_allclose(
            probs[t], np.broadcast_to(p[:, None, None], probs[t].shape), rtol=1e-5
        )


def test_object_disappearing_keeps_being_tracked(model, monkeypatch):
    # Object 1 predicted at frames 1, 2; absent (background wins) at 3, 4; back at frame 5.
    script = [_logits(0.0, [4.0])] * 2 + [_logits(4.0, [-4.0])] * 2 + [_logits(0.0, [4.0])]
    spy = DecodeSpy(model, script)
    monkeypatch.setattr(model, "decode", spy)
    ann = {0: _box(32, 32, 1, 4, 20, 4, 20)}
    labels, probs = segment_video(
        model, _video(6, 32, 32), ann, temporal_window=2, return_probs=True
    )
    assert (labels[1:3] == 1).all()
    assert (labels[3:5] == 0).all() and (probs[3:5] < 0.01).all()
    assert (labels[5] == 1).all()
    # Its descriptors stay valid while it is absent (encoded from a near-empty soft mask).
    assert spy.calls[4]["fg_valid"][0, 0].tolist() == [True, True, False]
    assert np.isfinite(probs).all()


def test_sizes_not_divisible_by_32_and_resizing(model):
    frames = _video(3, 50, 70)
    ann = {0: _box(50, 70, 1, 10, 40, 10, 50)}
    labels, probs = segment_video(model, frames, ann, return_probs=True)
    assert labels.shape == (3, 50, 70) and probs.shape == (3, 1, 50, 70)
    assert np.array_equal(labels[0], ann[0])
    labels, probs = segment_video(model, frames, ann, min_dim=40, max_dim=64, return_probs=True)
    assert labels.shape == (3, 50, 70) and probs.shape == (3, 1, 50, 70)
    # Down (to 40x56) and back up: the annotation survives except at its border.
    agree = (labels[0] == ann[0]).mean()
    assert agree > 0.95


def test_object_too_small_for_stride_8_is_dropped(model, caplog):
    ann = {0: _box(64, 64, 1, 8, 40, 8, 40) + _box(64, 64, 2, 50, 51, 50, 51)}
    with caplog.at_level(logging.WARNING, logger="softmask.model.video"):
        labels, probs = segment_video(model, _video(3, 64, 64), ann, return_probs=True)
    assert "[2]" in caplog.text
    assert not (labels == 2).any() and (probs[:, 1] == 0).all()


def test_torch_in_torch_out_and_labels_only(model):
    frames = torch.from_numpy(_video(2, 32, 32))
    out = segment_video(model, frames, {0: torch.from_numpy(_box(32, 32, 1, 0, 16, 0, 16))})
    assert isinstance(out, torch.Tensor) and out.shape == (2, 32, 32) and out.dtype == torch.uint8


def test_bad_inputs_raise_input_error(model):
    frames = _video(2, 32, 32)
    with pytest.raises(InputError, match="uint8"):
        segment_video(model, frames.astype(np.float32), {})
    with pytest.raises(InputError, match="annotation of frame 0"):
        segment_video(model, frames, {0: np.zeros((16, 16), np.uint8)})
    with pytest.raises(InputError, match="frame index"):
        segment_video(model, frames, {5: np.zeros((32, 32), np.uint8)})


def test_window_counts_frames_not_decoded_steps(model, monkeypatch):
    # Frame 0's only object is too small to encode (dropped), so frames 0..1 track nothing; frame 2
    # starts tracking. HODOR's window is by frame number: at frame 3 with W=2 it spans frames 1..2,
    # so frame 0's background descriptors must no longer be valid.
    spy = DecodeSpy(model)
    monkeypatch.setattr(model, "decode", spy)
    ann = {0: _box(32, 32, 1, 3, 4, 3, 4), 1: np.zeros((32, 32), np.uint8)}
    ann[2] = _box(32, 32, 2, 8, 24, 8, 24)
    labels = segment_video(model, _video(4, 32, 32), ann, temporal_window=2)
    assert (labels[:2] == 0).all()
    assert len(spy.calls) == 1  # frame 3 only; frame 2 is the first frame with a kept object
    assert spy.calls[0]["bg_valid"][0, 0].tolist() == [False, True, False]
    assert spy.calls[0]["fg_valid"][0].tolist() == [[False, False, False], [False, True, False]]


def test_the_window_shift_is_push_of_an_empty_frame_on_numpy_and_torch_states():
    from softmask.export.spec import STATE_NAMES, advance_window
    from softmask.model.video import VideoState, push

    g = torch.Generator().manual_seed(0)
    b, n, w, c = 1, 3, 4, 5
    state = VideoState(
        fg=torch.randn(b, n, w, c, generator=g),
        fg_valid=torch.rand(b, n, w, generator=g) > 0.5,
        bg=torch.randn(b, QB, w, c, generator=g),
        bg_valid=torch.rand(b, QB, w, generator=g) > 0.5,
        active=torch.tensor([[True, False, True]]),
    )
    # The ring buffer's own update with a frame that holds no valid descriptor.
    expected = push(state, torch.zeros(b, n, c), torch.zeros(b, n, dtype=torch.bool),
                    torch.zeros(b, QB, c), torch.zeros(b, dtype=torch.bool), state.active)
    tensors = {name: getattr(state, name) for name in STATE_NAMES}
    before = {name: t.clone() for name, t in tensors.items()}
    on_host = advance_window({name: t.numpy() for name, t in tensors.items()})
    on_torch = advance_window(tensors)
    for name in STATE_NAMES:
        want = getattr(expected, name)
        assert isinstance(on_host[name], np.ndarray) and on_host[name].dtype == want.numpy().dtype
        np.testing.assert_array_equal(on_host[name], want.numpy(), err_msg=name)
        assert torch.equal(on_torch[name], want), name
        assert torch.equal(tensors[name], before[name]), f"{name} was modified in place"
