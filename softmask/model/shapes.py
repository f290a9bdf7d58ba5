"""Shape checks for the model's per-frame calls: errors name the tensor and the shape expected."""

from __future__ import annotations

import torch

from softmask.errors import InputError


def expect_shape(
    name: str, tensor: torch.Tensor, shape: tuple[int | None, ...], layout: str
) -> None:
    """Raise InputError unless ``tensor`` has ``len(shape)`` dims matching ``shape`` (None: any)."""
    got = tuple(tensor.shape)
    ok = len(got) == len(shape) and all(e is None or g == e for g, e in zip(got, shape))
    if not ok:
        wanted = ", ".join("?" if e is None else str(e) for e in shape)
        raise InputError(f"{name} must be {layout} = [{wanted}], got {list(got)}")


def check_encode_inputs(
    f8: torch.Tensor,
    fg_masks: torch.Tensor,
    bg_masks: torch.Tensor,
    fg_valid: torch.Tensor | None,
    dim: int,
    num_bg: int,
) -> None:
    """Shapes of ``HodorModel.encode``'s inputs."""
    expect_shape("f8", f8, (None, dim, None, None), "[B, C, h, w]")
    b, _, h, w = f8.shape
    expect_shape("fg_masks", fg_masks, (b, None, h, w), "[B, I, h, w]")
    expect_shape("bg_masks", bg_masks, (b, num_bg, h, w), "[B, Qb, h, w]")
    if fg_valid is not None:
        expect_shape("fg_valid", fg_valid, (b, fg_masks.shape[1]), "[B, I]")


def check_decode_inputs(
    f4: torch.Tensor,
    f8: torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    fg_valid: torch.Tensor | None,
    bg_valid: torch.Tensor | None,
    dim: int,
    num_bg: int,
) -> None:
    """Shapes of ``HodorModel.decode``'s inputs."""
    expect_shape("f8", f8, (None, dim, None, None), "[B, C, h, w]")
    b, _, h, w = f8.shape
    expect_shape("f4", f4, (b, dim, 2 * h, 2 * w), "[B, C, 2h, 2w]")
    expect_shape("fg", fg, (b, None, None, dim), "[B, I, T, C]")
    num_obj, steps = fg.shape[1], fg.shape[2]
    expect_shape("bg", bg, (b, num_bg, steps, dim), "[B, Qb, T, C]")
    if (fg_valid is None) != (bg_valid is None):
        raise InputError("give both fg_valid and bg_valid, or neither")
    if fg_valid is not None and bg_valid is not None:
        expect_shape("fg_valid", fg_valid, (b, num_obj, steps), "[B, I, T]")
        expect_shape("bg_valid", bg_valid, (b, num_bg, steps), "[B, Qb, T]")
