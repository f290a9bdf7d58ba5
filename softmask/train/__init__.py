"""Weakly supervised training of HODOR-family models (cyclic consistency).

Docs: docs/training.md; the bundled model it produced: docs/model-card.md.
"""

from softmask.train.trainer import TrainConfig, train

__all__ = ["TrainConfig", "train"]
