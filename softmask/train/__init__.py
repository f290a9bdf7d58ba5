"""Weakly supervised training of HODOR-family models (cyclic consistency) and the bundled model.

Docs: docs/training.md, docs/model-card.md.
"""

from pathlib import Path

from softmask.train.trainer import TrainConfig, train

BUNDLED_CHECKPOINT = "hodor_tiny.pth"


def bundled_checkpoint_path() -> Path:
    """The trained "tiny" checkpoint shipped inside the package (softmask/assets)."""
    return Path(__file__).resolve().parent.parent / "assets" / BUNDLED_CHECKPOINT


__all__ = ["BUNDLED_CHECKPOINT", "TrainConfig", "bundled_checkpoint_path", "train"]
