"""The run manifest (``run.json``): what a run's outputs are made of, written before its first
frame, so ``--resume`` can tell whether an output folder's masks belong to the same job, also
after a run that was killed before it wrote its report.

| key | what | why resume compares it |
| --- | --- | --- |
| ``source`` | kind, frame size, first frame's sha256, frame count, fps | masks of another video |
| ``annotations`` | frame index -> sha256 of the label map | masks of other objects |
| ``model`` | checkpoint or export digest | masks of another model |
| ``backend`` | backend, precision, stream spec | masks of another graph |
| ``outputs`` | overlay, mask video | a video begun with other outputs |

The source is identified by its content, not its name: a moved file resumes; a URL that serves
other frames is refused. The name is recorded, with its credentials redacted, for people.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from softmask.errors import InputError
from softmask.files import atomic_file
from softmask.redact import redact
from softmask.runtime.annotations import Annotations
from softmask.runtime.settings import PreparedBackend
from softmask.runtime.sources import FrameSource

MANIFEST_NAME = "run.json"
# Keys compared on resume, in the order a refusal names them.
_COMPARED = ("source", "annotations", "model", "backend", "outputs")


def run_manifest(
    source: FrameSource,
    annotations: Annotations,
    prepared: PreparedBackend,
    overlay: bool,
    mask_video: bool,
) -> dict[str, Any]:
    """The manifest of a run about to start (JSON-ready)."""
    first = source.first_frame().rgb
    backend = prepared.backend
    return {
        "source": {
            "kind": source.kind,
            "frame_size": list(first.shape[:2]),
            "first_frame_sha256": hashlib.sha256(first.tobytes()).hexdigest(),
            "frame_count": source.frame_count,
            "fps": source.fps,
        },
        "annotations": {
            str(index): hashlib.sha256(labels.tobytes() + str(labels.shape).encode()).hexdigest()
            for index, labels in sorted(annotations.labels.items())
        },
        "model": prepared.setup.get("model"),
        "backend": {"name": backend.name, "precision": backend.precision,
                    "spec": asdict(backend.spec)},
        "outputs": {"overlay": overlay, "mask_video": mask_video},
        "source_name": redact(source.name),
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write ``out/run.json`` atomically."""
    with atomic_file(out / MANIFEST_NAME, "w") as stream:
        json.dump(manifest, stream, indent=2)
        stream.write("\n")


def _differences(before: Any, now: Any, where: str) -> list[str]:
    """Dotted keys whose values differ (a missing key counts as differing)."""
    if isinstance(before, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(before) | set(now), key=str):
            found += _differences(before.get(key), now.get(key), f"{where}.{key}")
        return found
    return [] if before == now else [where]


def check_resume(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse to resume into ``out`` unless its manifest describes the same job.

    Raises:
        InputError: one line naming what differs, or saying the earlier run left no manifest.
    """
    path = out / MANIFEST_NAME
    if not path.is_file():
        raise InputError(
            f"--resume: {out} has no {MANIFEST_NAME} (written when a run starts), so its masks "
            "cannot be checked against this run's source, annotations and model; pass "
            "--overwrite to start again"
        )
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable run manifest: {error}") from error
    differs = [key for part in _COMPARED
               for key in _differences(earlier.get(part), manifest.get(part), part)]
    if differs:
        raise InputError(
            f"--resume: the outputs in {out} were made with another {', '.join(differs)} "
            f"(see {path}); resume with the same source, annotations, model and settings, or "
            "pass --overwrite"
        )
