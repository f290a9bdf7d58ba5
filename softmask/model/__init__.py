"""HODOR architecture (full and tiny configs), checkpoints, and the per-frame video loop.

User docs: ``docs/model.md``; spec: ``docs/reference/hodor_model.md``. The names below are
imported on first use: ``softmask.model.config`` and ``softmask.model.geometry`` work without
PyTorch, the rest needs it.
"""

from softmask.optional import lazy_attributes

_SOURCES = {
    "bundled_checkpoint_path": "softmask.model.checkpoint",
    "load_checkpoint": "softmask.model.checkpoint",
    "save_checkpoint": "softmask.model.checkpoint",
    "PRESETS": "softmask.model.config",
    "ModelConfig": "softmask.model.config",
    "resolve_config": "softmask.model.config",
    "HodorModel": "softmask.model.hodor",
    "build_model": "softmask.model.hodor",
    "VideoState": "softmask.model.video",
    "init_state": "softmask.model.video",
    "segment_video": "softmask.model.video",
    "step": "softmask.model.video",
}
__getattr__, __dir__ = lazy_attributes(__name__, _SOURCES)
