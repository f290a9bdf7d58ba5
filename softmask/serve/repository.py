"""Write a Triton model repository for a streaming export (``softmask serve repo``).

Layout (``REPO/``):

    softmask_serve.json           what was written, and the tritonserver flags it needs
    softmask_stream/config.pbtxt  python backend, sequence batcher (oldest), CORRID/START/END/READY
    softmask_stream/1/model.py    loads softmask.serve.triton_model
    softmask_stream/manifest.json the export's manifest (sizes, dtypes, state shapes)
    softmask_stream/export/       in-process only: the export (graphs + manifest)
    softmask_<graph>/             onnxruntime / tensorrt / python only, for each graph the export
                                  lists (features, init, step, annotate; no features in a format
                                  version 1 export): config.pbtxt, 1/model.onnx | 1/model.plan |
                                  1/model.onnx + 1/model.py

Graph variants:

| ``graphs`` | per-frame graphs run | needs |
| --- | --- | --- |
| ``in-process`` | inside softmask_stream, with softmask's ONNX Runtime backend | the python backend only (the embedded server) |
| ``onnxruntime`` | Triton's onnxruntime backend, called from softmask_stream (BLS) | a Triton build with that backend (NGC container) |
| ``tensorrt`` | Triton's tensorrt backend (plans built here when TensorRT is importable), BLS | the NGC container + the plugin library (``--backend-config=tensorrt,plugins=...``) |
| ``python`` | python-backend models running ONNX Runtime, BLS | the python backend only; the BLS path on the embedded server |

Every size and dtype comes from the export's manifest.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from softmask.errors import BackendUnavailable, InputError
from softmask.export.manifest import MANIFEST_NAME, StreamingExport, load_streaming_export
from softmask.files import atomic_dir
from softmask.runtime.factory import BackendCapabilities, capabilities
from softmask.serve.pbtxt import Enum, to_pbtxt
from softmask.serve.protocol import (
    ANNOTATION,
    CORRID,
    END,
    FRAME,
    FRAME_INDEX,
    GRAPH_MODELS,
    KEY_BYTES,
    LABELS,
    READY,
    SCORES,
    START,
    STREAM_KEY,
    STREAM_MODEL,
)

logger = logging.getLogger(__name__)

# The runtime that runs each variant's per-frame graphs (module docstring): its row in
# softmask.runtime.factory's capability table says which devices and plan flags apply.
VARIANT_RUNTIMES = {
    "in-process": "onnxruntime", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt",
    "python": "onnxruntime",
}
GRAPH_VARIANTS = tuple(VARIANT_RUNTIMES)
# Variants the python backend alone can serve (the tritonserver bundled with nvidia-pytriton).
PYTHON_ONLY_VARIANTS = ("in-process", "python")
REPOSITORY_MANIFEST = "softmask_serve.json"
BUILD_PLANS_SCRIPT = "build_plans.sh"
REPOSITORY_FORMAT = "softmask-serve-repository"
DEFAULT_MAX_STREAMS = 8
DEFAULT_IDLE_TIMEOUT_S = 60.0
# Triton's sequence batcher holds a slot per sequence from START until END, or until the sequence
# idles past max_sequence_idle_microseconds: also for a sequence the model does not serve (its
# START was refused and the client sent no END; the client died). A START finding no free slot
# waits in Triton's backlog instead of reaching the model, which would refuse it at once. The
# pool therefore has room for the open streams, as many dead ones (reaped by the model, still
# held by Triton) and this many unended refused STARTs.
SPARE_SEQUENCE_SLOTS = 256

_TRITON_DTYPES = {
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
}

_STREAM_MODEL_PY = '''"""softmask_stream, written by `softmask serve repo`: the model is
softmask.serve.triton_model.StreamModel (docs/serving.md)."""

from softmask.serve.triton_model import StreamModel as TritonPythonModel  # noqa: F401
'''

_GRAPH_MODEL_PY = '''"""A per-frame graph on the python backend, written by `softmask serve repo --graphs python`:
the model is softmask.serve.graph_model.GraphModel (docs/serving.md)."""

from softmask.serve.graph_model import GraphModel as TritonPythonModel  # noqa: F401
'''


def _triton_dtype(dtype: str, where: str) -> Enum:
    if dtype not in _TRITON_DTYPES:
        raise InputError(f"{where}: dtype {dtype} has no Triton type this writer knows")
    return Enum(_TRITON_DTYPES[dtype])


def _static_dims(shape: list[Any], where: str) -> list[int]:
    if not all(isinstance(d, int) for d in shape):
        raise InputError(f"{where}: shape {shape} is not static; export with fixed sizes")
    return list(shape)


def _tensor(info: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "name": info["name"],
        "data_type": _triton_dtype(info["dtype"], where),
        "dims": _static_dims(info["shape"], where),
    }


def _parameters(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


def _control(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "control": [{"kind": Enum(kind), "int32_false_true": [0, 1]}]}


def stream_model_config(
    export: StreamingExport,
    graphs: str,
    max_streams: int,
    idle_timeout_s: float,
    instances: int,
    device: str,
    scores: bool,
) -> dict[str, Any]:
    """softmask_stream's model configuration (a dict for ``to_pbtxt``).

    Triton keeps a sequence's slot for twice ``idle_timeout_s``, so a frame of a stream reaped
    after ``idle_timeout_s`` still reaches the model and hears its (clearer) refusal. It keeps
    ``2 * max_streams + SPARE_SEQUENCE_SLOTS`` candidate sequences, so a START beyond
    ``max_streams`` reaches the model, which refuses it at once, instead of waiting in Triton's
    backlog (see ``SPARE_SEQUENCE_SLOTS``).
    """
    spec = export.spec
    outputs = [
        {"name": LABELS, "data_type": Enum("TYPE_UINT8"), "dims": [spec.height, spec.width]},
        {"name": FRAME_INDEX, "data_type": Enum("TYPE_INT64"), "dims": [1]},
    ]
    if scores:
        outputs.append({
            "name": SCORES,
            "data_type": Enum("TYPE_FP32"),
            "dims": [spec.num_objects, spec.height, spec.width],
        })
    kind = "KIND_GPU" if (device == "gpu" and graphs == "in-process") else "KIND_CPU"
    return {
        "name": STREAM_MODEL,
        "backend": "python",
        "max_batch_size": 0,
        "input": [
            {"name": FRAME, "data_type": Enum("TYPE_UINT8"), "dims": [spec.height, spec.width, 3]},
            {
                "name": ANNOTATION,
                "data_type": Enum("TYPE_UINT8"),
                "dims": [spec.height, spec.width],
                "optional": True,
            },
            {"name": STREAM_KEY, "data_type": Enum("TYPE_UINT8"), "dims": [KEY_BYTES],
             "optional": True},
        ],
        "output": outputs,
        "sequence_batching": {
            "max_sequence_idle_microseconds": int(2 * idle_timeout_s * 1e6),
            "control_input": [
                _control(START, "CONTROL_SEQUENCE_START"),
                _control(END, "CONTROL_SEQUENCE_END"),
                _control(READY, "CONTROL_SEQUENCE_READY"),
                {
                    "name": CORRID,
                    "control": [
                        {"kind": Enum("CONTROL_SEQUENCE_CORRID"), "data_type": Enum("TYPE_UINT64")}
                    ],
                },
            ],
            "oldest": {
                "max_candidate_sequences": 2 * max_streams + SPARE_SEQUENCE_SLOTS,
                "max_queue_delay_microseconds": 0,
            },
        },
        "instance_group": [{"kind": Enum(kind), "count": instances}],
        "parameters": _parameters({
            "graphs": graphs,
            "max_streams": max_streams,
            "idle_timeout_s": idle_timeout_s,
            "scores": int(scores),
            "device": device,
            "num_objects": spec.num_objects,
        }),
    }


def graph_model_config(export: StreamingExport, graph: str, graphs: str, device: str) -> dict:
    """The configuration of model softmask_<graph> (a dict for ``to_pbtxt``)."""
    where = f"{export.directory / MANIFEST_NAME} graph {graph!r}"
    config: dict[str, Any] = {"name": GRAPH_MODELS[graph]}
    if graphs == "onnxruntime":
        config.update(platform="onnxruntime_onnx", default_model_filename="model.onnx")
    elif graphs == "tensorrt":
        config.update(platform="tensorrt_plan", default_model_filename="model.plan")
    else:
        config.update(backend="python")
    kind = "KIND_GPU" if device == "gpu" else "KIND_CPU"
    config.update(
        max_batch_size=0,
        input=[_tensor(i, where) for i in export.io(graph, "inputs")],
        output=[_tensor(o, where) for o in export.io(graph, "outputs")],
        instance_group=[{"kind": Enum(kind), "count": 1}],
    )
    return config


def _write_config(model_dir: Path, config: dict[str, Any]) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "config.pbtxt"
    path.write_text(to_pbtxt(config) + "\n")
    return path


def _plugin_paths(plugins: list[str] | None) -> list[str]:
    if plugins:
        return [str(p) for p in plugins]
    from softmask.plugins.library import autoregister_library_path

    try:
        return [str(autoregister_library_path())]
    except BackendUnavailable as error:
        raise BackendUnavailable(
            "a tensorrt repository needs the plugin library's path on the server: pass --plugin "
            f"PATH (e.g. the container's path of libsoftmask_trt_plugin_autoregister.so). {error}"
        ) from error


def _write_tensorrt_graph(
    export: StreamingExport, graph: str, model_dir: Path, build_plans: bool
) -> str | None:
    """Write the stripped ONNX graph beside config.pbtxt and, when ``build_plans``, build
    ``1/model.plan`` with TensorRT; returns the trtexec command that builds it otherwise."""
    from softmask.ops.onnx_op import strip_function_bodies

    model = onnx.load(str(export.graphs[graph]))
    strip_function_bodies(model)
    stripped = model_dir / f"{graph}.onnx"
    onnx.save(model, str(stripped))
    plan = model_dir / "1" / "model.plan"
    plan.parent.mkdir(parents=True, exist_ok=True)
    if not build_plans:
        typed = " --stronglyTyped" if export.precision == "fp16" else ""
        return (f'trtexec --onnx="$REPO/{model_dir.name}/{stripped.name}" '
                f'--saveEngine="$REPO/{model_dir.name}/1/model.plan" '
                f'--dynamicPlugins="$PLUGIN"{typed}')
    from softmask.plugins import load_into_tensorrt
    from softmask.runtime.tensorrt_build import build_serialized_engine, import_tensorrt

    trt = import_tensorrt()
    load_into_tensorrt()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    expected = export.manifest["graphs"][graph]["op_nodes"]
    engine = build_serialized_engine(
        trt, trt_logger, model.SerializeToString(), stripped, expected, export.precision, 1 << 30,
        label=f"{graph} ({stripped.name})",
    )
    plan.write_bytes(engine)
    logger.info("built %s with TensorRT %s", plan, trt.__version__)
    return None


def write_repository(
    export_dir: str | Path | StreamingExport,
    out: str | Path,
    graphs: str = "in-process",
    max_streams: int = DEFAULT_MAX_STREAMS,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    instances: int = 1,
    device: str | None = None,
    scores: bool = False,
    plugins: list[str] | None = None,
    build_plans: bool = True,
) -> Path:
    """Write a model repository serving ``export_dir``'s graphs to ``out``.

    Args:
        export_dir: a streaming export (``softmask export``), or one already loaded.
        out: repository folder (created; must not hold another repository's models).
        graphs: "in-process", "onnxruntime", "tensorrt" or "python" (module docstring).
        max_streams: most concurrent streams per softmask_stream instance.
        idle_timeout_s: a stream idle this long (seconds) is reaped, its state freed.
        instances: softmask_stream instances (each holds its own streams; Triton pins a stream
            to one instance).
        device: "cpu" or "gpu" for the graphs (default: gpu for onnxruntime/tensorrt, cpu for
            in-process/python).
        scores: also return float32 [N, H, W] object scores per frame (output SCORES).
        plugins: tensorrt only: plugin library path(s) as the server sees them (default: this
            checkout's libsoftmask_trt_plugin_autoregister.so).
        build_plans: tensorrt only: build each graph's plan here (needs TensorRT and the GPU the
            server will use); False writes ``build_plans.sh`` (trtexec) to run there instead.

    The repository is written into a temporary folder beside ``out`` and renamed into place, so
    a failure partway (a plan that does not build, a full disk) leaves no partial repository, and
    an earlier repository in ``out`` stays as it was until the new one is complete.

    Returns:
        The repository folder.

    Raises:
        InputError: unknown variant or device, bad limits, a non-static export, or ``out`` holds
            files of another repository (the messages name the CLI flags).
        BackendUnavailable: tensorrt: TensorRT or the plugin library is missing.
    """
    check_repository_settings(graphs, device, max_streams, idle_timeout_s, instances)
    device = device or ("gpu" if graphs in ("onnxruntime", "tensorrt") else "cpu")
    export = export_dir if isinstance(export_dir, StreamingExport) else load_streaming_export(
        export_dir
    )
    repo = Path(out)
    if repo.exists():
        if not repo.is_dir():
            raise InputError(f"{repo}: is a file; write the repository to a folder")
        ours = {STREAM_MODEL, *GRAPH_MODELS.values(), REPOSITORY_MANIFEST, BUILD_PLANS_SCRIPT}
        strangers = sorted(p.name for p in repo.iterdir() if p.name not in ours)
        if strangers:
            raise InputError(f"{repo}: holds {strangers[:5]}; write the repository to a new folder")
    plans = variant_capabilities(graphs).builds_engines
    plugin_paths = _plugin_paths(plugins) if plans else []
    if plans and build_plans:
        from softmask.runtime.tensorrt_build import import_tensorrt

        import_tensorrt()  # fail before writing anything
    with atomic_dir(repo, replace=True, noun="repository") as staging:
        summary = _write_models(export, staging, graphs, max_streams, idle_timeout_s, instances,
                                device, scores, plugin_paths, build_plans)
    logger.info("wrote Triton model repository %s (%s graphs)", repo, summary["graphs"])
    return repo


def variant_capabilities(graphs: str) -> BackendCapabilities:
    """The capability row of the runtime that runs variant ``graphs``' per-frame graphs."""
    return capabilities(VARIANT_RUNTIMES[graphs])


def variants_where(test: Callable[[BackendCapabilities], bool]) -> tuple[str, ...]:
    """The variants whose runtime's row passes ``test`` (for messages)."""
    return tuple(g for g in GRAPH_VARIANTS if test(variant_capabilities(g)))


@dataclass(frozen=True)
class StreamLimits:
    """A repository's stream limits as given (None / False: not given, ``resolved`` fills in the
    defaults).

    max_streams [--max-streams]: most concurrent streams per softmask_stream instance.
    idle_timeout_s [--idle-timeout]: seconds without a frame after which a stream is reaped.
    instances [--instances]: softmask_stream instances.
    scores [--scores]: also answer float32 object scores.
    """

    max_streams: int | None = None
    idle_timeout_s: float | None = None
    instances: int | None = None
    scores: bool = False

    def resolved(self) -> dict[str, Any]:
        """``write_repository``'s keyword arguments of these limits, defaults filled in."""
        return {
            "max_streams": self.max_streams or DEFAULT_MAX_STREAMS,
            "idle_timeout_s": self.idle_timeout_s or DEFAULT_IDLE_TIMEOUT_S,
            "instances": self.instances or 1,
            "scores": self.scores,
        }


def check_plan_flags(graphs: str, plugins: bool, skip_plans: bool) -> None:
    """Refuse --plugin / --skip-plans for a variant whose runtime builds no TensorRT engines
    (its row in the capability table says so; they would be ignored).

    Raises:
        InputError: one line naming the first flag given.
    """
    if variant_capabilities(graphs).builds_engines:
        return
    plans = " or ".join(variants_where(lambda c: c.builds_engines))
    for flag, given in (("--plugin", plugins), ("--skip-plans", skip_plans)):
        if given:
            raise InputError(f"{flag}: applies to --graphs {plans}, not {graphs}; drop {flag}")


def check_repository_settings(
    graphs: str, device: str | None, max_streams: int, idle_timeout_s: float, instances: int
) -> None:
    """Refuse repository settings that cannot work, naming the flags (before any work).

    Raises:
        InputError: unknown --graphs or --device, tensorrt off the GPU, or limits that are not
            positive (--max-streams, --instances) or not a positive finite number of seconds
            (--idle-timeout).
    """
    if graphs not in GRAPH_VARIANTS:
        raise InputError(f"--graphs {graphs}: choose one of {', '.join(GRAPH_VARIANTS)}")
    if device not in (None, "cpu", "gpu"):
        raise InputError(f"--device {device}: choose cpu or gpu")
    if device == "cpu" and variant_capabilities(graphs).gpu_only:
        raise InputError(f"--device cpu: {graphs} graphs (--graphs {graphs}) run on a GPU only")
    for flag, value in (("--max-streams", max_streams), ("--instances", instances)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{flag} {value}: must be a positive integer")
    if not (isinstance(idle_timeout_s, (int, float)) and math.isfinite(idle_timeout_s)
            and idle_timeout_s > 0):
        raise InputError(
            f"--idle-timeout {idle_timeout_s}: must be a positive, finite number of seconds"
        )


def _write_models(
    export: StreamingExport,
    repo: Path,
    graphs: str,
    max_streams: int,
    idle_timeout_s: float,
    instances: int,
    device: str,
    scores: bool,
    plugin_paths: list[str],
    build_plans: bool,
) -> dict[str, Any]:
    """Write the repository's models and ``softmask_serve.json`` into the empty folder ``repo``;
    return the summary written there."""
    stream_dir = repo / STREAM_MODEL
    _write_config(stream_dir, stream_model_config(
        export, graphs, max_streams, idle_timeout_s, instances, device, scores
    ))
    (stream_dir / "1").mkdir()
    (stream_dir / "1" / "model.py").write_text(_STREAM_MODEL_PY)
    (stream_dir / MANIFEST_NAME).write_text(json.dumps(export.manifest, indent=2) + "\n")
    if graphs == "in-process":
        shutil.copytree(export.directory, stream_dir / "export",
                        ignore=shutil.ignore_patterns("*.engine", "*.json.tmp"))
    trtexec = []
    for graph in export.graphs if graphs != "in-process" else ():
        model_dir = repo / GRAPH_MODELS[graph]
        _write_config(model_dir, graph_model_config(export, graph, graphs, device))
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        if graphs == "tensorrt":
            command = _write_tensorrt_graph(export, graph, model_dir, build_plans)
            if command:
                trtexec.append(command)
        else:
            shutil.copyfile(export.graphs[graph], model_dir / "1" / "model.onnx")
            if graphs == "python":
                (model_dir / "1" / "model.py").write_text(_GRAPH_MODEL_PY)
    if trtexec:
        script = repo / BUILD_PLANS_SCRIPT
        script.write_text(
            "#!/usr/bin/env bash\n"
            "# Builds each graph's TensorRT plan; run it where the server runs (inside the Triton\n"
            "# container, on its GPU): plans are specific to a TensorRT release and a GPU.\n"
            f"#   bash {BUILD_PLANS_SCRIPT} /path/to/libsoftmask_trt_plugin_autoregister.so\n"
            "set -euo pipefail\n"
            'REPO="$(cd "$(dirname "$0")" && pwd)"\n'
            # Quoted for the shell: a path is data, never code, whatever characters it holds.
            f"DEFAULT_PLUGIN={shlex.quote(plugin_paths[0])}\n"
            'PLUGIN="${1:-$DEFAULT_PLUGIN}"\n' + "\n".join(trtexec) + "\n"
        )
        script.chmod(0o755)
    server_args = ["--model-control-mode=none"]
    if plugin_paths:
        server_args.append(f"--backend-config=tensorrt,plugins={';'.join(plugin_paths)}")
    summary = {
        "format": REPOSITORY_FORMAT,
        "format_version": 1,
        "graphs": graphs,
        "device": device,
        "export": str(export.directory.resolve()),
        "spec": export.manifest["spec"],
        "precision": export.precision,
        "max_streams": max_streams,
        "idle_timeout_s": idle_timeout_s,
        "instances": instances,
        "scores": scores,
        "plugins": plugin_paths,
        "plans_built": graphs == "tensorrt" and build_plans,
        "tritonserver_args": server_args,
    }
    (repo / REPOSITORY_MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def read_repository_manifest(repo: str | Path) -> dict[str, Any]:
    """``softmask_serve.json`` of a repository written by ``write_repository``.

    Raises:
        InputError: missing or of another format.
    """
    path = Path(repo) / REPOSITORY_MANIFEST
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(
            f"{path}: not a softmask model repository ({error}); write one with softmask serve repo"
        ) from error
    if summary.get("format") != REPOSITORY_FORMAT:
        raise InputError(f"{path}: format {summary.get('format')!r}, not {REPOSITORY_FORMAT!r}")
    return summary
