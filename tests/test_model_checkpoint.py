"""Checkpoints: HODOR's format (dict with 'model', optional config.yaml beside), strict loading."""

from __future__ import annotations

import pytest
import torch

from softmask.errors import InputError
from softmask.model import build_model, load_checkpoint, save_checkpoint


def _randomised(model):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name, value in a.items():
        assert torch.equal(value, b[name]), name


def test_tiny_round_trip_recovers_config_and_weights(tmp_path):
    model = _randomised(build_model("tiny")).train()
    path = tmp_path / "run" / "tiny.pth"
    save_checkpoint(model, path, extra={"step": 7})
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"model", "softmask_config", "step"}
    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    _assert_same_tensors(loaded.state_dict(), model.state_dict())
    f8 = torch.randn(1, model.config.dim, 4, 4)
    masks = torch.rand(1, 2, 4, 4) / 2
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(f8, masks), model.eval().encode(f8, masks))


def test_fabricated_hodor_checkpoint_loads_strictly(tmp_path):
    model = _randomised(build_model("hodor"))
    weights = model.state_dict()
    path = tmp_path / "hodor.pth"
    # As HODOR's trainer writes it: no config key of ours; optimiser and logger state beside.
    torch.save({"model": weights, "optimizers_and_lr_schedulers": {"lr": 1e-4}, "logger": {}}, path)
    loaded = load_checkpoint(path)
    assert loaded.config.name == "hodor" and not loaded.training
    _assert_same_tensors(loaded.state_dict(), weights)
    # config.yaml beside the file (HODOR's dumped cfg) sets the shape-free options too.
    (tmp_path / "config.yaml").write_text(
        "MODEL:\n  ENCODER_LAYERS: 5\n  DECODER_LAYERS: 5\n  NUM_ATTN_HEADS: 8\n"
        "  POS_ENCODINGS_IN_FMQ: true\n  POS_ENCODINGS_IN_FQM: true\n"
    )
    assert load_checkpoint(path).config.encoder_key_pos is True
    (tmp_path / "config.yaml").write_text("MODEL:\n  DECODER_LAYERS: 4\n")
    with pytest.raises(InputError, match=r"unexpected \(24\): decoder\.attn_layers\.4\."):
        load_checkpoint(path)


def test_mismatched_checkpoint_lists_every_problem(tmp_path):
    weights = build_model("tiny").state_dict()
    weights["encoder.fg_query_embed"] = torch.zeros(32)
    del weights["decoder.bg_query_proj.bias"]
    weights["decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"model": weights}, path)
    with pytest.raises(InputError) as info:
        load_checkpoint(path, config="tiny")
    message = str(info.value)
    assert str(path) in message
    assert "missing (1): decoder.bg_query_proj.bias" in message
    assert "unexpected (1): decoder.extra.weight" in message
    assert "encoder.fg_query_embed: checkpoint [32] vs model [64]" in message


def test_wrong_model_for_checkpoint_is_an_input_error(tmp_path):
    path = tmp_path / "tiny.pth"
    save_checkpoint(build_model("tiny"), path)
    with pytest.raises(InputError, match="mis-shaped"):
        load_checkpoint(path, config={"preset": "tiny", "dim": 128})


def test_not_a_hodor_checkpoint(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"weights": {}}, path)
    with pytest.raises(InputError, match="'model'"):
        load_checkpoint(path)
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


class _Opaque:
    pass


def test_arbitrary_pickles_need_explicit_trust(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": build_model("tiny").state_dict(), "logger": _Opaque()}, path)
    with pytest.raises(InputError, match="trust_pickle"):
        load_checkpoint(path, config="tiny")
    assert load_checkpoint(path, config="tiny", trust_pickle=True).config.name == "tiny"


def test_corrupt_file_is_an_input_error(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"not a checkpoint")
    for trust in (False, True):
        with pytest.raises(InputError, match=r"corrupt.pth: not a PyTorch checkpoint") as caught:
            load_checkpoint(path, trust_pickle=trust)
        assert "trust_pickle" not in str(caught.value)
    truncated = tmp_path / "truncated.pth"
    save_checkpoint(build_model("tiny"), truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(InputError, match="truncated.pth"):
        load_checkpoint(truncated)
