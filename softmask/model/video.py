"""HODOR's video loop, built from explicit per-frame steps.

A frame's journey (``segment_video`` runs it per frame; a streaming runtime or the ONNX export runs
the same functions):

1. ``preprocess_frame``: uint8 RGB [H, W, 3] -> resized (short side ``min_dim``, long side capped
   at ``max_dim``; None keeps the size), normalised (ImageNet mean/std in 0..255 units; HODOR states
   them in BGR order and flips to RGB), zero-padded right/bottom to multiples of 32
   -> [1, 3, Hp, Wp].
   Annotations go through ``prepare_annotation`` (bilinear resize, > 0.5, pad).
2. ``model.features``: stride-4 and stride-8 maps of this frame only.
3. ``annotate`` (only on frames that carry annotations): descriptors of the annotated objects from
   their given masks. ``first_frame`` is the same for the first annotated frame, which then runs
   only the encoder.
4. ``step``: decoder with the last W frames' descriptors (+ this frame's annotated ones) ->
   post-processing (softmax, annotation override) -> encoder with this frame's soft masks -> the
   ring buffer advances by one frame.
5. ``finalize``: crop the padding, resize to the original size, argmax with catch-all and
   background -> label 0.

Every tensor has a size fixed by (number of objects N, window W, frame size): objects not yet seen
are slots with validity False, so init/step can become fixed-shape graphs. Only the choice of which
function to call per frame (no objects yet / annotation present / last frame) is Python.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from softmask.errors import InputError
from softmask.export.spec import advance_window
from softmask.model.geometry import FrameGeometry, frame_geometry
from softmask.model.hodor import HodorModel

logger = logging.getLogger(__name__)

# ImageNet statistics in 0..255 units, RGB order (HODOR: BGR means 103.53, 116.28, 123.675 and
# stds 57.375, 57.12, 58.395 applied to BGR images, then flipped to RGB: the same numbers).
PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (58.395, 57.12, 57.375)
# The encoder runs on stride-8 maps.
ENCODER_STRIDE = 8
# Mask values above this count as the object (annotation resizing, dropping vanished objects).
MASK_THRESHOLD = 0.5


@dataclass
class VideoState:
    """Descriptor ring buffer of the last W frames (index W-1 = newest) and validity flags.

    fg: [B, N, W, C] object descriptors; fg_valid: [B, N, W] bool.
    bg: [B, Qb, W, C] background descriptors; bg_valid: [B, Qb, W] bool.
    active: [B, N] bool, objects tracked so far (annotated at some earlier frame and kept).
    """

    fg: torch.Tensor
    fg_valid: torch.Tensor
    bg: torch.Tensor
    bg_valid: torch.Tensor
    active: torch.Tensor


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the last two dims of x on the right/bottom to size."""
    return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def preprocess_frame(frame: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> normalised, padded float32 [1, 3, Hp, Wp]."""
    image = frame.permute(2, 0, 1)[None].float()
    image = _resize(image, geometry.resized)
    mean = torch.tensor(PIXEL_MEAN_RGB, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD_RGB, device=image.device).view(1, 3, 1, 1)
    return pad_to((image - mean) / std, geometry.padded)


def prepare_annotation(
    labels: torch.Tensor, num_objects: int, geometry: FrameGeometry
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label map [H, W] (0 background, 1..N) -> (masks [1, N, Hp, Wp] float 0/1, annotated [1, N]).

    An object counts as annotated on this frame when its label occurs in the map. Masks are resized
    bilinearly and thresholded at 0.5, then zero-padded (as HODOR's data loader).
    """
    ids = torch.arange(1, num_objects + 1, device=labels.device)
    onehot = (labels[None].long() == ids[:, None, None]).float()  # [N, H, W]
    annotated = onehot.flatten(1).amax(dim=1) > 0
    masks = (_resize(onehot[None], geometry.resized) > MASK_THRESHOLD).float()
    return pad_to(masks, geometry.padded), annotated[None]


def init_state(
    model: HodorModel,
    num_objects: int,
    window: int,
    batch: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> VideoState:
    """An empty ring buffer (descriptors in ``dtype``): no valid descriptors, no active objects."""
    c, qb = model.config.dim, model.num_bg
    flags = {"dtype": torch.bool, "device": device}
    return VideoState(
        fg=torch.zeros(batch, num_objects, window, c, device=device, dtype=dtype),
        fg_valid=torch.zeros(batch, num_objects, window, **flags),
        bg=torch.zeros(batch, qb, window, c, device=device, dtype=dtype),
        bg_valid=torch.zeros(batch, qb, window, **flags),
        active=torch.zeros(batch, num_objects, **flags),
    )


def push(
    state: VideoState,
    fg: torch.Tensor,
    fg_valid: torch.Tensor,
    bg: torch.Tensor,
    bg_valid: torch.Tensor,
    active: torch.Tensor,
) -> VideoState:
    """Append one frame's descriptors (fg [B, N, C], fg_valid [B, N], bg [B, Qb, C], bg_valid [B])
    to the ring buffer, dropping the oldest frame."""
    qb = bg.shape[1]
    return VideoState(
        fg=torch.cat((state.fg[:, :, 1:], fg[:, :, None].to(state.fg.dtype)), dim=2),
        fg_valid=torch.cat((state.fg_valid[:, :, 1:], fg_valid[:, :, None]), dim=2),
        bg=torch.cat((state.bg[:, :, 1:], bg[:, :, None].to(state.bg.dtype)), dim=2),
        bg_valid=torch.cat(
            (state.bg_valid[:, :, 1:], bg_valid[:, None, None].expand(-1, qb, 1)), dim=2
        ),
        active=active,
    )


def push_empty(state: VideoState) -> VideoState:
    """Advance the ring buffer by one frame that holds no valid descriptor (the runtimes' shift,
    ``softmask.export.spec.advance_window``)."""
    return VideoState(**advance_window(vars(state)))


def _to_stride8(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.interpolate(
        x, size=(h // ENCODER_STRIDE, w // ENCODER_STRIDE), mode="bilinear", align_corners=False
    )


@dataclass
class Annotated:
    """Descriptors of the objects annotated on the current frame.

    fg: [B, N, C]; valid: [B, N] (annotated and still visible at stride 8); bg: [B, Qb, C] (used
    only when this is the first annotated frame); masks: [B, N, Hp, Wp] 0/1 (zeros where not
    valid).
    """

    fg: torch.Tensor
    valid: torch.Tensor
    bg: torch.Tensor
    masks: torch.Tensor


def annotate(
    model: HodorModel, f8: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor
) -> Annotated:
    """Encode the annotated objects' given masks (masks [B, N, Hp, Wp] 0/1, annotated [B, N]).

    Background masks are the grid cells restricted to pixels no annotated object covers, both at
    input resolution, then resized to stride 8 with the object masks. An annotated object whose
    stride-8 mask has no value > 0.5 is dropped (too small to be encoded; HODOR does the same).
    """
    masks = masks * annotated[:, :, None, None].to(masks.dtype)
    free = (masks < MASK_THRESHOLD).all(dim=1, keepdim=True).to(masks.dtype)  # [B, 1, Hp, Wp]
    bg_full = model.background_masks(torch.zeros_like(masks[:, :1])) * free
    fg8 = _to_stride8(masks)
    bg8 = _to_stride8(bg_full)
    valid = annotated & (fg8.flatten(2) > MASK_THRESHOLD).any(dim=2)
    fg, bg = model.encode(f8, fg8, bg8, fg_valid=valid)
    return Annotated(
        fg=fg, valid=valid, bg=bg, masks=masks * valid[:, :, None, None].to(masks.dtype)
    )


def first_frame(state: VideoState, ann: Annotated) -> tuple[VideoState, torch.Tensor]:
    """The first annotated frame: store the annotation's descriptors (no decoding).

    Returns (new state, object scores [B, N, Hp, Wp] = the kept annotation masks). Their argmax
    against 0 gives this frame's labels, as HODOR's output for that frame.
    """
    b = ann.fg.shape[0]
    bg_valid = torch.ones(b, dtype=torch.bool, device=ann.fg.device)
    new_state = push(state, ann.fg, ann.valid, ann.bg, bg_valid, state.active | ann.valid)
    return new_state, ann.masks


def override_with_annotation(
    probs: torch.Tensor, num_bg: int, ann: Annotated | None
) -> torch.Tensor:
    """HODOR's ground-truth override on [B, 1 + Qb + N, H, W] probabilities.

    Where any kept annotated mask is on, every channel is zeroed; each kept annotated object's
    channel becomes its mask (everywhere: its prediction is replaced, not merged).
    """
    if ann is None:
        return probs
    covered = ann.masks.amax(dim=1, keepdim=True) > MASK_THRESHOLD
    probs = probs.masked_fill(covered, 0.0)
    background, objects = probs[:, : 1 + num_bg], probs[:, 1 + num_bg :]
    objects = torch.where(ann.valid[:, :, None, None], ann.masks.to(objects.dtype), objects)
    return torch.cat((background, objects), dim=1)


@dataclass
class StepOutput:
    """One decoded frame: ``probs`` [B, 1 + Qb + N, Hp, Wp] output probabilities at the padded input
    size (catch-all, background cells, objects; annotation override applied) and the new state."""

    probs: torch.Tensor
    state: VideoState


def step(
    model: HodorModel,
    state: VideoState,
    f4: torch.Tensor,
    f8: torch.Tensor,
    ann: Annotated | None = None,
    encode: bool = True,
) -> StepOutput:
    """Decode a frame with the ring buffer (+ this frame's annotated descriptors), post-process, and
    (unless ``encode`` is False, e.g. on the last frame) encode it into the ring buffer.

    Two probability paths, as in HODOR: the output upsamples logits to the input size then applies
    softmax; the encoder's masks apply softmax at stride 4, upsample, override, and resize to
    stride 8.
    """
    b, n = state.active.shape
    qb = model.num_bg
    c = model.config.dim
    if ann is None:
        cur_fg = torch.zeros(b, n, c, device=f8.device, dtype=state.fg.dtype)
        cur_valid = torch.zeros(b, n, dtype=torch.bool, device=f8.device)
    else:
        cur_fg, cur_valid = ann.fg, ann.valid
    fg = torch.cat((state.fg, cur_fg[:, :, None]), dim=2)
    fg_valid = torch.cat((state.fg_valid, cur_valid[:, :, None]), dim=2)
    bg = torch.cat((state.bg, torch.zeros_like(state.bg[:, :, :1])), dim=2)
    bg_valid = torch.cat((state.bg_valid, torch.zeros_like(state.bg_valid[:, :, :1])), dim=2)
    logits = model.decode(f4, f8, fg, bg, fg_valid, bg_valid)  # [B, 1+Qb+N, Hp/4, Wp/4]
    padded = (f4.shape[-2] * 4, f4.shape[-1] * 4)
    out_probs = override_with_annotation(_resize(logits, padded).softmax(dim=1), qb, ann)
    active = state.active | cur_valid
    if not encode:
        return StepOutput(out_probs, replace(state, active=active))
    enc_probs = override_with_annotation(_resize(logits.softmax(dim=1), padded), qb, ann)
    fg_masks = _to_stride8(enc_probs[:, 1 + qb :])
    new_fg, new_bg = model.encode(f8, fg_masks, fg_valid=active)
    bg_ok = torch.ones(b, dtype=torch.bool, device=f8.device)
    return StepOutput(out_probs, push(state, new_fg, active, new_bg, bg_ok, active))


def finalize(
    scores: torch.Tensor, num_background: int, geometry: FrameGeometry
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop padding, resize every channel to the original size, argmax.

    Args:
        scores: [K, Hp, Wp]: ``num_background`` background channels (catch-all and background cells
            after decoding; one zero channel on a first annotated frame), then N objects.
    Returns:
        (labels [H, W] uint8: 0 where a background channel wins (ties go to the first channel, as
         torch.argmax), else object index + 1;
         object scores [N, H, W] float32 at the original size: the values the argmax compared).
    """
    rh, rw = geometry.resized
    resized = _resize(scores[None, :, :rh, :rw], geometry.original)[0]
    winner = resized.argmax(dim=0)
    labels = torch.where(
        winner < num_background, torch.zeros_like(winner), winner - num_background + 1
    )
    # Through float32 (exact for ids <= 255): TensorRT converts uint8 only from/to float and half
    # (NvInferRuntimeBase.h, DataType::kUINT8), so a direct int64 -> uint8 cast may not build.
    return labels.to(torch.float32).to(torch.uint8), resized[num_background:].float()


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        return x
    raise InputError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def _check_inputs(frames: torch.Tensor, annotations: dict) -> int:
    """Validate; return N (largest object label over all annotations)."""
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise InputError(
            f"frames must be uint8 [T, H, W, 3] RGB, got {frames.dtype} {list(frames.shape)}"
        )
    t, h, w, _ = frames.shape
    num_objects = 0
    for index, labels in annotations.items():
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < t:
            raise InputError(f"annotation key {index!r} is not a frame index in [0, {t})")
        if tuple(labels.shape) != (h, w) or labels.dtype != torch.uint8:
            raise InputError(
                f"annotation of frame {index} must be uint8 [{h}, {w}], "
                f"got {labels.dtype} {list(labels.shape)}"
            )
        num_objects = max(num_objects, int(labels.max()))
    return num_objects


@torch.no_grad()
def segment_video(
    model: HodorModel,
    frames,
    annotations: dict,
    temporal_window: int = 7,
    min_dim: int | None = None,
    max_dim: int | None = None,
    return_probs: bool = False,
):
    """Segment a video with HODOR's inference loop.

    Args:
        model: a HodorModel (used in eval mode; its mode is restored afterwards).
        frames: uint8 [T, H, W, 3] RGB, numpy or torch.
        annotations: frame index -> uint8 label map [H, W] (0 background, 1..N objects). Objects may
            first appear at any frame; labels present in a map are that frame's annotated objects.
        temporal_window: W, the number of past frames whose descriptors the decoder sees.
        min_dim, max_dim: resize rule of ``frame_geometry`` (None, None: keep the input size).
        return_probs: also return the per-object scores.
    Returns:
        labels uint8 [T, H, W] (numpy if frames was numpy, else torch); with return_probs, also
        float32 [T, N, H, W] per-object probabilities at the original size (zeros before an object
        appears; on its annotated first frame, its resized mask), N = largest label in annotations.
    """
    as_numpy = isinstance(frames, np.ndarray)
    frames_t = _as_tensor(frames, "frames")
    anns = {int(k): _as_tensor(v, f"annotations[{k}]") for k, v in annotations.items()}
    num_objects = _check_inputs(frames_t, anns)
    anns = {k: v for k, v in anns.items() if bool(v.any())}  # a map without objects annotates none
    if temporal_window < 1:
        raise InputError(f"temporal_window must be >= 1, got {temporal_window}")
    t_len, height, width, _ = frames_t.shape
    geometry = frame_geometry(height, width, min_dim, max_dim)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels_out = torch.zeros(t_len, height, width, dtype=torch.uint8)
    probs_out = torch.zeros(t_len, num_objects, height, width) if return_probs else None
    state = init_state(model, num_objects, temporal_window, device=device)
    qb = model.num_bg
    try:
        for t in range(t_len):
            has_ann = t in anns
            if not bool(state.active.any()) and not has_ann:
                # Nothing tracked yet: all-zero labels and probabilities. The ring buffer still
                # advances, so its window counts frames, as HODOR's (indexed by frame number).
                state = push_empty(state)
                continue
            f4, f8 = model.features(preprocess_frame(frames_t[t].to(device), geometry))
            ann = None
            if has_ann:
                masks, annotated = prepare_annotation(anns[t].to(device), num_objects, geometry)
                ann = annotate(model, f8, masks, annotated)
                dropped = (annotated & ~ann.valid).nonzero()[:, 1].tolist()
                if dropped:
                    logger.warning(
                        "frame %d: objects %s vanish at stride 8 and are dropped",
                        t,
                        [i + 1 for i in dropped],
                    )
            if not bool(state.active.any()):
                state, masks_kept = first_frame(state, ann)
                scores, num_background = (
                    torch.cat((torch.zeros_like(masks_kept[:, :1]), masks_kept), 1),
                    1,
                )
            else:
                out = step(model, state, f4, f8, ann, encode=t < t_len - 1)
                state, scores, num_background = out.state, out.probs, 1 + qb
            labels, object_probs = finalize(scores[0], num_background, geometry)
            labels_out[t] = labels.cpu()
            if probs_out is not None:
                probs_out[t] = object_probs.cpu()
    finally:
        model.train(was_training)
    if as_numpy:
        labels_np = labels_out.numpy()
        return (labels_np, probs_out.numpy()) if return_probs else labels_np
    return (labels_out, probs_out) if return_probs else labels_out
