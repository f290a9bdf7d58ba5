"""Export HODOR's per-frame streaming graphs (features.onnx, init.onnx, step.onnx, annotate.onnx)
and their manifest (manifest.json). Reading an export back needs no PyTorch:
``softmask.export.manifest`` (re-exported here).

The graphs are the modules of ``softmask.export.frame_graphs``, exported with ``export_onnx`` at
one fixed frame size, object count and window (batch 1): one uint8 frame in, one uint8 label map
out; the descriptor ring buffer and validity flags are explicit inputs/outputs that the runtime
feeds back. By default the frame encoder is a graph of its own that the others consume, so its
weights are stored (and loaded) once; ``shared_features=False`` writes the self-contained graphs of
format version 1. User docs: docs/runtime.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx
import torch

from softmask import __version__
from softmask.errors import InputError
from softmask.export.frame_graphs import (
    FEATURES_GRAPH,
    GRAPH_MODULES,
    GRAPH_NAMES,
    SHARED_GRAPH_MODULES,
    FeaturesGraph,
    StreamSpec,
    empty_state,
    input_names,
    output_names,
)
from softmask.export.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    StreamingExport,
    load_streaming_export,
)
from softmask.export.mixed_precision import PrecisionPlan, mixed_precision_model
from softmask.export.onnx_export import export_onnx
from softmask.files import atomic_dir, file_sha256
from softmask.model.hodor import HodorModel
from softmask.ops.onnx_lowering import ATTENTION_LOWERINGS, lower_attention
from softmask.testing_hooks import pause_point

logger = logging.getLogger(__name__)


def _value_infos(values) -> list[dict[str, Any]]:
    infos = []
    for value in values:
        tensor_type = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        shape = [
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor_type.shape.dim
        ]
        infos.append({"name": value.name, "dtype": str(dtype), "shape": shape})
    return infos


def _graph_entry(path: Path) -> dict[str, Any]:
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "op_nodes": int(props.get("softmask.op_nodes", 0)),
        "inputs": _value_infos(model.graph.input),
        "outputs": _value_infos(model.graph.output),
    }


def example_inputs(
    model: HodorModel, spec: StreamSpec, graph: str, state_dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """Inputs of ``graph`` for tracing: a random uint8 frame, an empty annotation, empty state."""
    generator = torch.Generator().manual_seed(0)
    frame = torch.randint(
        0, 256, (spec.height, spec.width, 3), dtype=torch.uint8, generator=generator
    )
    state = empty_state(model, spec, dtype=state_dtype)
    if graph == "step":
        return (frame, *state)
    annotation = torch.zeros(spec.height, spec.width, dtype=torch.uint8)
    return (frame, annotation, *state)


def shared_example_inputs(
    exported: HodorModel, spec: StreamSpec, graph: str, state_dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """Inputs of ``graph`` of a shared-encoder export for tracing: ``example_inputs`` with the
    frame replaced by the maps ``FeaturesGraph`` of ``exported`` (the model in the export's
    precision) makes of it."""
    frame, *rest = example_inputs(exported, spec, graph, state_dtype)
    if graph == FEATURES_GRAPH:
        return (frame,)
    f4, f8 = FeaturesGraph(exported, spec).eval()(frame)
    return (f8, *rest) if graph == "init" else (f4, f8, *rest)


def graph_metadata(
    model: HodorModel, spec: StreamSpec, plan: PrecisionPlan, graph: str
) -> dict[str, str]:
    """metadata_props of one exported graph."""
    return {
        "softmask.stream_spec": json.dumps(asdict(spec)),
        "softmask.model_config": json.dumps(model.config.to_dict()),
        "softmask.precision": plan.precision,
        "softmask.fp32_groups": ",".join(plan.fp32_groups),
        "softmask.graph": graph,
    }


@torch.no_grad()
def export_streaming(
    model: HodorModel,
    out_dir: str | Path,
    height: int,
    width: int,
    num_objects: int,
    temporal_window: int = 7,
    fp16: bool = False,
    min_dim: int | None = None,
    max_dim: int | None = None,
    progress: Callable[[str], None] | None = None,
    fp32_groups: Sequence[str] = (),
    attention: str = "plugin",
    shared_features: bool = True,
) -> StreamingExport:
    """Export the streaming graphs of ``model`` for one frame size and object count.

    The graphs are written into a temporary folder beside ``out_dir`` and renamed into place with
    the manifest, so an interrupted export leaves no half export behind.

    Args:
        model: a HodorModel (not modified: a copy in the export's precision is exported).
        out_dir: folder for features.onnx, init.onnx, step.onnx, annotate.onnx and manifest.json
            (created).
        height, width: frame size in pixels of every frame of the videos to run.
        num_objects: N, object slots (object ids 1..N may appear at any frame).
        temporal_window: W, past frames whose descriptors the decoder sees.
        fp16: float16 weights and descriptors (frame uint8, labels uint8, scores float32).
        min_dim, max_dim: resize rule inside the graphs (``softmask.model.video.frame_geometry``).
        progress: called with each graph's name before it is exported (for progress output).
        fp32_groups: with fp16, groups of ``softmask.export.mixed_precision.FP32_GROUPS`` kept in
            float32 (casts at the islands' edges; "descriptors" also keeps the state in fp32).
        attention: how the attention is written (``softmask.ops.onnx_lowering``): "plugin" (the
            custom node with its function body), "function" (the body inlined) or
            "onnx-attention" (ONNX's Attention op).
        shared_features: the frame encoder in a graph of its own (``features``) that the others
            consume (format version 2); False: each graph holds it (version 1, no features.onnx).

    Returns:
        The export (paths and manifest).

    Raises:
        InputError: a size is not a positive integer, an unknown fp32 group, or ``out_dir`` is a
            file or a folder that is not empty.
        ExportError: the exporter failed or a graph fails ``onnx.checker``.
    """
    spec = StreamSpec(height, width, num_objects, temporal_window, min_dim, max_dim)
    plan = PrecisionPlan(fp16, tuple(fp32_groups))
    if attention not in ATTENTION_LOWERINGS:
        raise InputError(f"--attention {attention}: choose one of {list(ATTENTION_LOWERINGS)}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: export folder exists and is not empty; export into a new folder")
    with atomic_dir(out, noun="export") as staging:
        graphs = export_graphs(
            model, staging, spec, plan, GRAPH_NAMES, progress, shared_features=shared_features
        )
        if attention != "plugin":
            for path in graphs.values():
                onnx.save(lower_attention(onnx.load(str(path)), attention), str(path))
        write_manifest(staging, model, spec, plan, graphs)
    return load_streaming_export(out)


@torch.no_grad()
def export_graphs(
    model: HodorModel,
    out_dir: str | Path,
    spec: StreamSpec,
    plan: PrecisionPlan,
    names: Sequence[str],
    progress: Callable[[str], None] | None = None,
    shared_features: bool = True,
) -> dict[str, Path]:
    """Export the per-frame graphs ``names`` of ``model`` in ``plan``'s precision into ``out_dir``
    as ``<name>.onnx`` (no manifest: ``write_manifest`` makes one); with ``shared_features`` the
    ``features`` graph too, first, and ``names`` take its maps instead of the frame. Returns
    name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exported = mixed_precision_model(model, plan)
    modules = SHARED_GRAPH_MODULES if shared_features else GRAPH_MODULES
    if shared_features and names:
        names = (FEATURES_GRAPH, *(n for n in names if n != FEATURES_GRAPH))
    graphs: dict[str, Path] = {}
    for name in names:
        if progress is not None:
            progress(name)
        module = modules[name](exported, spec).eval()
        if shared_features:
            inputs = shared_example_inputs(exported, spec, name, plan.state_dtype)
        else:
            inputs = example_inputs(model, spec, name, plan.state_dtype)
        graphs[name] = export_onnx(
            module,
            inputs,
            out / f"{name}.onnx",
            input_names=input_names(name, shared_features),
            output_names=output_names(name),
            metadata=graph_metadata(model, spec, plan, name),
        )
        logger.info("exported streaming graph %s (%s) -> %s", name, plan.name, graphs[name])
        pause_point("export-graph-written")
    return graphs


def write_manifest(
    out_dir: str | Path,
    model: HodorModel,
    spec: StreamSpec,
    plan: PrecisionPlan,
    graphs: dict[str, Path],
) -> StreamingExport:
    """Write ``manifest.json`` for ``graphs`` (name -> file in ``out_dir``) and return the export:
    format version 2 when ``graphs`` has the ``features`` graph (each per-frame graph runs after
    it), else 1. ``load_streaming_export`` accepts it once every graph of ``GRAPH_NAMES`` is
    listed."""
    out = Path(out_dir)
    geometry = spec.geometry
    shared = FEATURES_GRAPH in graphs
    chains = {n: [FEATURES_GRAPH, n] for n in GRAPH_NAMES if n in graphs} if shared else None
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION if shared else 1,
        "softmask_version": __version__,
        "precision": plan.precision,
        "fp32_groups": list(plan.fp32_groups),
        "model_config": model.config.to_dict(),
        "spec": asdict(spec),
        "geometry": {
            "original": list(geometry.original),
            "resized": list(geometry.resized),
            "padded": list(geometry.padded),
        },
        "num_bg": model.num_bg,
        "dim": model.config.dim,
        "graphs": {name: _graph_entry(path) for name, path in graphs.items()},
        **({"frame_graphs": chains} if shared else {}),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return StreamingExport(out, manifest, dict(graphs))
