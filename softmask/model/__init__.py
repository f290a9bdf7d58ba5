"""HODOR architecture (full and tiny configs), checkpoints, and the per-frame video loop.

User docs: ``docs/model.md``; spec: ``docs/reference/hodor_model.md``.
"""

from softmask.model.checkpoint import bundled_checkpoint_path, load_checkpoint, save_checkpoint
from softmask.model.config import PRESETS, ModelConfig, resolve_config
from softmask.model.hodor import HodorModel, build_model
from softmask.model.video import VideoState, init_state, segment_video, step

__all__ = [
    "PRESETS",
    "HodorModel",
    "ModelConfig",
    "VideoState",
    "build_model",
    "bundled_checkpoint_path",
    "init_state",
    "load_checkpoint",
    "resolve_config",
    "save_checkpoint",
    "segment_video",
    "step",
]
