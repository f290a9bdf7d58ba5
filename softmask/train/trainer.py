"""The training loop: synthetic clips -> cyclic losses -> AdamW; checkpoints; resume; seeded.

Determinism: every random choice comes from one numpy Generator and torch's global generator,
both seeded from ``TrainConfig.seed`` and saved in every checkpoint, so a resumed run continues
exactly as an uninterrupted one would (same machine, same torch build).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from softmask.data.synthetic import SyntheticVideo, generate_video
from softmask.errors import InputError
from softmask.model import build_model, save_checkpoint
from softmask.model.checkpoint import load_checkpoint, read_payload
from softmask.model.hodor import HodorModel
from softmask.testing_hooks import pause_point
from softmask.train.clips import static_clip, video_clip
from softmask.train.cycles import cyclic_losses

logger = logging.getLogger(__name__)

# Seeds of generated training videos start here; held-out evaluation sets use seeds below it.
TRAIN_SEED_BASE = 1_000_000
LATEST = "latest.pth"
LR_SCHEDULES = ("constant", "cosine")
# The cosine schedule ends at this fraction of the base rate rather than at zero, so the last
# steps still move the weights.
MIN_LR_FRACTION = 0.02


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    supervision: "weak" (only the reference frame's annotation; cyclic re-segmentation loss) or
        "full" (also the other frames' ground truth).
    static_fraction: share of batches that are static-image pseudo-videos (always fully
        supervised, as HODOR's static-image mode).
    videos: size of the synthetic training pool (seeds TRAIN_SEED_BASE + seed * 10_000 + i).
    lr_schedule: "constant" (``lr`` throughout) or "cosine" (``lr`` decayed to
        ``MIN_LR_FRACTION * lr`` along half a cosine over the run's ``steps``; resuming with a
        larger ``steps`` stretches the remaining curve).
    """

    out_dir: str
    model: str = "tiny"
    supervision: str = "weak"
    steps: int = 2000
    batch_size: int = 4
    lr: float = 3e-4
    lr_schedule: str = "constant"
    weight_decay: float = 0.01
    height: int = 128
    width: int = 224
    frames_per_video: int = 16
    videos: int = 200
    num_objects: int = 5
    static_fraction: float = 0.3
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 2
    init_from: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.supervision not in ("weak", "full"):
            raise InputError(f"supervision must be 'weak' or 'full', got {self.supervision!r}")
        if self.height % 32 or self.width % 32:
            raise InputError(f"training frames must be multiples of 32, got {self.height}x{self.width}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(
                f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if not 0.0 <= self.static_fraction <= 1.0:
            raise InputError(f"static_fraction must be in [0, 1], got {self.static_fraction}")


def training_pool(
    config: TrainConfig,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[SyntheticVideo]:
    """The synthetic training videos of a run (a pure function of the config).

    ``progress`` wraps the index iterable (e.g. tqdm): large pools take minutes to generate.
    """
    base = TRAIN_SEED_BASE + config.seed * 10_000
    indices = range(config.videos)
    return [generate_video(base + i, config.height, config.width, config.frames_per_video,
                           max_objects=config.num_objects)
            for i in (progress(indices) if progress else indices)]


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of optimisation step ``step`` (0-based) under the config's schedule."""
    if config.lr_schedule == "constant":
        return config.lr
    progress = min(step / max(config.steps, 1), 1.0)
    fraction = MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * fraction


def _batch(pool, rng: np.random.Generator, config: TrainConfig, static: bool):
    clips = []
    for _ in range(config.batch_size):
        video = pool[int(rng.integers(len(pool)))]
        clips.append(static_clip(video, rng) if static else video_clip(video, rng))
    return (torch.stack([c.images for c in clips]), torch.stack([c.labels for c in clips]))


def _save(path: Path, model, optimizer, step, rng, config, history) -> None:
    save_checkpoint(model, path, extra={
        "optimizer": optimizer.state_dict(),
        "step": step,
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "train_config": asdict(config),
        "history": history,
    })


def train(
    config: TrainConfig,
    resume: bool = True,
    progress: Callable[[int, int, dict], None] | None = None,
    pool_progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Path:
    """Train (or resume) a model; returns the final checkpoint path (``<out_dir>/final.pth``).

    Checkpoints ``<out_dir>/latest.pth`` (atomically: an interrupted save keeps the earlier one)
    every ``checkpoint_every`` steps and at the end; with ``resume`` and a ``latest.pth``
    present, training continues from it (read with ``weights_only=True``: a file that pickles
    code is refused). ``progress(step, steps,
    losses)`` is called after every step (the CLI draws a progress bar with it);
    ``pool_progress`` wraps the generation of the training videos (see ``training_pool``).
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model: HodorModel = (load_checkpoint(config.init_from) if config.init_from
                         else build_model(config.model))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    step, history = 0, []
    latest = out / LATEST
    if resume and latest.is_file():
        payload = read_payload(latest)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        step, history = payload["step"], payload["history"]
        rng.bit_generator.state = payload["numpy_rng"]
        torch.set_rng_state(payload["torch_rng"])
        logger.info("resumed from %s at step %d", latest, step)
    pool = training_pool(config, pool_progress)
    started = time.perf_counter()
    while step < config.steps:
        static = rng.random() < config.static_fraction
        images, labels = _batch(pool, rng, config, static)
        losses = cyclic_losses(model, images, labels, config.num_objects,
                               full_supervision=static or config.supervision == "full")
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        optimizer.step()
        step += 1
        record = {"step": step, "loss": losses.total.item(), "static": static,
                  "cycle_ce": losses.cycle_ce.item(), "cycle_dice": losses.cycle_dice.item()}
        history.append(record)
        if progress:
            progress(step, config.steps, record)
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save(latest, model, optimizer, step, rng, config, history)
            pause_point("train-checkpoint-saved")
    final = out / "final.pth"
    model.eval()
    save_checkpoint(model, final, extra={"train_config": asdict(config), "steps": step,
                                         "wall_seconds": time.perf_counter() - started})
    return final
