"""An export folder as a runtime reads it, without PyTorch: ``manifest.json`` and the graphs it
lists (``softmask.export.streaming`` writes both).

The manifest says which graphs a backend loads (``graphs``: name -> file, sha256, inputs and
outputs) and which of them run, in order, for each per-frame graph (``frame_graphs``):

| format_version | graphs | frame_graphs |
| --- | --- | --- |
| 2 (shared encoder) | features, init, step, annotate | init: [features, init], step: [features, step], annotate: [features, annotate] |
| 1 | init, step, annotate (each with the frame encoder inside) | absent: each frame graph runs alone |

Within a chain, a graph's inputs are the frame, the annotation, the state (``STATE_NAMES``) or an
output of an earlier graph of the chain, by name; the last graph gives labels, scores and the next
state (``output_names``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softmask.errors import InputError
from softmask.export.plan import PrecisionPlan
from softmask.export.spec import GRAPH_NAMES, STATE_NAMES, StreamSpec
from softmask.files import file_sha256
from softmask.model.config import ModelConfig

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "softmask-streaming"
# What this version writes, and what it reads.
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class StreamingExport:
    """An export folder: its manifest (parsed) and the path of each graph a backend loads, keyed
    by graph name."""

    directory: Path
    manifest: dict[str, Any]
    graphs: dict[str, Path]

    @property
    def spec(self) -> StreamSpec:
        """Frame size, object count, window and resize rule the graphs were exported for."""
        return StreamSpec(**self.manifest["spec"])

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.manifest["model_config"])

    @property
    def precision(self) -> str:
        """ "fp32" or "fp16" (descriptors and weights; labels are uint8, scores float32)."""
        return self.manifest["precision"]

    @property
    def plan(self) -> PrecisionPlan:
        """The precision plan: fp32, fp16, or fp16 with fp32 islands (``fp32_groups``)."""
        groups = tuple(self.manifest.get("fp32_groups", ()))
        return PrecisionPlan(self.precision == "fp16", groups)

    def chain(self, graph: str) -> tuple[str, ...]:
        """The graphs that run, in order, for per-frame graph ``graph`` ("init", "step",
        "annotate")."""
        return frame_graph_chains(self.manifest)[graph]

    def io(self, graph: str, kind: str) -> list[dict[str, Any]]:
        """``kind`` "inputs" or "outputs" of ``graph``: [{"name", "dtype", "shape"}, ...]."""
        return self.manifest["graphs"][graph][kind]

    def state_infos(self) -> dict[str, dict[str, Any]]:
        """{"name", "dtype", "shape"} of each state tensor, keyed by ``STATE_NAMES``."""
        infos = {info["name"]: info for info in self.io(self.chain("step")[-1], "inputs")}
        return {name: infos[name] for name in STATE_NAMES}


def frame_graph_chains(manifest: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per-frame graph name -> the graphs that run for it (version 1: the graph alone)."""
    chains = manifest.get("frame_graphs") or {name: [name] for name in GRAPH_NAMES}
    return {name: tuple(chain) for name, chain in chains.items()}


def load_streaming_export(directory: str | Path, verify_hashes: bool = True) -> StreamingExport:
    """Read an export folder written by ``export_streaming`` (format version 1 or 2).

    Raises:
        InputError: the manifest is missing, unreadable or of another format, a per-frame graph
            has no chain or its chain names an unlisted graph, a graph file is missing, or
            (``verify_hashes``) a graph's sha256 differs from the manifest's.
    """
    folder = Path(directory)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no streaming manifest (run softmask export first)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{manifest_path}: unreadable manifest: {error}") from error
    if (
        manifest.get("format") != MANIFEST_FORMAT
        or manifest.get("format_version") not in READABLE_VERSIONS
    ):
        raise InputError(
            f"{manifest_path}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; expected {MANIFEST_FORMAT!r} version "
            f"{' or '.join(map(str, READABLE_VERSIONS))}"
        )
    entries = manifest.get("graphs", {})
    chains = frame_graph_chains(manifest)
    for name in GRAPH_NAMES:
        if name not in chains:
            raise InputError(f"{manifest_path}: no frame_graphs entry for graph {name!r}")
        for part in chains[name]:
            if part not in entries:
                raise InputError(
                    f"{manifest_path}: no entry for graph {part!r} (run for {name!r})"
                )
    graphs = {}
    for name, entry in entries.items():
        path = folder / entry["file"]
        if not path.is_file():
            raise InputError(f"{path}: graph file listed in {manifest_path} is missing")
        if verify_hashes and file_sha256(path) != entry["sha256"]:
            raise InputError(f"{path}: sha256 differs from {manifest_path} (file was modified)")
        graphs[name] = path
    return StreamingExport(folder, manifest, graphs)
