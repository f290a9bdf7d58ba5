"""ONNX Runtime backend: runs the exported graphs (custom node via its standard-op function body)
with the best available execution provider, the state kept as OrtValues on that provider's device.
Needs no PyTorch.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from softmask.errors import BackendUnavailable
from softmask.export.manifest import StreamingExport
from softmask.export.spec import NEXT_SUFFIX, STATE_NAMES, advance_window
from softmask.files import atomic_file
from softmask.runtime.backend import FrameOutput, StageClock
from softmask.runtime.cache_dirs import cache_root

logger = logging.getLogger(__name__)

# Tried in this order when no providers are given; the first available one holds the state.
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
# Short names for --providers; "tensorrt" keeps CUDA for the nodes TensorRT does not take.
PROVIDER_ALIASES = {
    "tensorrt": (TENSORRT_PROVIDER, "CUDAExecutionProvider"),
    "cuda": ("CUDAExecutionProvider",),
    "cpu": ("CPUExecutionProvider",),
}
# The TensorRT provider lists IPluginV3 creators (getAllCreators) from ONNX Runtime 1.22 on
# (microsoft/onnxruntime PR #24211); before, it saw V1/V2 creators only.
TENSORRT_PLUGIN_MIN_ORT = (1, 22)


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailable(
            f"`import onnxruntime` failed ({error}); install onnxruntime (CPU) or "
            "onnxruntime-gpu (CUDA)"
        ) from error
    return onnxruntime


def select_providers(providers: Sequence[str] | None = None) -> list[str]:
    """The execution providers to use: ``providers`` if all are available, else (None) CUDA if
    available, then CPU.

    Raises:
        BackendUnavailable: onnxruntime is missing or a named provider is unavailable.
    """
    ort = _import_onnxruntime()
    available = ort.get_available_providers()
    if providers:
        wanted = [full for p in providers for full in PROVIDER_ALIASES.get(p.lower(), (p,))]
    else:
        wanted = [p for p in DEFAULT_PROVIDERS if p in available]
    missing = [p for p in wanted if p not in available]
    if missing or not wanted:
        raise BackendUnavailable(
            f"ONNX Runtime execution provider(s) {missing or wanted} unavailable; this "
            f"onnxruntime {ort.__version__} has {available}"
        )
    if TENSORRT_PROVIDER in wanted and _version(ort.__version__) < TENSORRT_PLUGIN_MIN_ORT:
        raise BackendUnavailable(
            f"ONNX Runtime {ort.__version__}'s TensorRT provider cannot run the SoftMaskedAttention "
            "plugin (IPluginV3 creators are listed from 1.22 on): install onnxruntime-gpu >= 1.22"
        )
    return wanted


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("+")[0].split(".")[:2] if part.isdigit())


def tensorrt_provider(export: StreamingExport, cache_dir: str | Path | None) -> tuple[
        dict[str, Path], dict[str, str]]:
    """What a session with ONNX Runtime's TensorRT provider needs: the graphs with the op's
    function bodies stripped (so TensorRT takes the plugin node), written once under the cache
    folder, and the provider options: the self-registering plugin library (the provider
    ``dlopen``s it, its creator registers itself), and engine and timing caches there.

    Raises:
        BackendUnavailable: the plugin library is not built.
    """
    import onnx

    from softmask.ops.onnx_op import strip_function_bodies
    from softmask.plugins import autoregister_library_path

    root = (Path(cache_dir) if cache_dir is not None else cache_root() / "engines") / "ort-tensorrt"
    graphs = {}
    for name, path in export.graphs.items():
        data = Path(path).read_bytes()
        target = root / hashlib.sha256(data).hexdigest()[:16] / f"{name}.onnx"
        if not target.is_file():
            model = onnx.load_from_string(data)
            strip_function_bodies(model)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target) as stream:
                stream.write(model.SerializeToString())
        graphs[name] = target
    options = {
        "trt_extra_plugin_lib_paths": str(autoregister_library_path()),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(root / "engines"),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(root),
    }
    return graphs, options


class OnnxRuntimeBackend:
    """``Backend`` running ``export``'s graphs in ONNX Runtime sessions.

    Args:
        export: a ``StreamingExport`` (``export_streaming`` / ``load_streaming_export``).
        providers: execution providers in priority order (default: CUDA if available, then CPU);
            full names or the short names of ``PROVIDER_ALIASES`` ("tensorrt": TensorRT's provider
            with the plugin, then CUDA).
        with_scores: also download the float32 [N, H, W] object scores per frame.
        threads: intra-op threads of the sessions (None: ONNX Runtime's default, one per core).
        spin_wait: let idle intra-op threads spin (ONNX Runtime's default) instead of sleeping.
            Off by default: in the pipeline, spinning threads take the cores the decode and
            writer threads need (measured by ``softmask bench``, docs/runtime.md); on for
            benchmarking the model alone.
        engine_cache_dir: with TensorRT's provider, the folder for the stripped graphs and its
            engine and timing caches (default ``$SOFTMASK_CACHE/engines``).

    Per frame only the uint8 frame (and annotation) is uploaded and the uint8 labels (plus the N
    ``active`` flags after ``init``/``annotate``) downloaded; the state, and the frame encoder's
    maps between the graphs of a shared-encoder export (``StreamingExport.chain``), stay on the
    device. Each graph file is one session, so the frame encoder's weights are loaded once.
    """

    name = "onnxruntime"

    def __init__(
        self,
        export: StreamingExport,
        providers: Sequence[str] | None = None,
        with_scores: bool = False,
        threads: int | None = None,
        spin_wait: bool = False,
        engine_cache_dir: str | Path | None = None,
    ) -> None:
        ort = _import_onnxruntime()
        self._ort = ort
        self.spec = export.spec
        self.precision = export.precision
        self.with_scores = with_scores
        wanted = select_providers(providers)
        self.export, self.providers = export, wanted
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spin_wait else "0"
        )
        self.spin_wait = spin_wait
        self.threads = threads
        graphs: dict[str, Path] = dict(export.graphs)
        session_providers: list = list(wanted)
        if TENSORRT_PROVIDER in wanted:
            graphs, trt_options = tensorrt_provider(export, engine_cache_dir)
            session_providers[wanted.index(TENSORRT_PROVIDER)] = (TENSORRT_PROVIDER, trt_options)
        self._sessions = {
            name: ort.InferenceSession(str(path), sess_options=options, providers=session_providers)
            for name, path in graphs.items()
        }
        first = next(iter(self._sessions.values())).get_providers()[0]
        # TensorRT's provider runs on CUDA memory: the state stays there between frames.
        on_gpu = first in ("CUDAExecutionProvider", TENSORRT_PROVIDER)
        self._device_type = "cuda" if on_gpu else "cpu"
        self.device = f"{self._device_type} ({first})"
        self._state_infos = export.state_infos()
        self._state: dict[str, object] = {}
        self.reset()
        logger.info("onnxruntime %s backend on %s", ort.__version__, self.device)

    def _upload(self, array: np.ndarray):
        return self._ort.OrtValue.ortvalue_from_numpy(
            np.ascontiguousarray(array), self._device_type, 0
        )

    def new_stream(self) -> OnnxRuntimeBackend:
        """Another stream on the same sessions and device with its own, empty state (a server
        holds one per stream; their frames run one at a time)."""
        other = copy.copy(self)  # shares the sessions; reset() gives it a state of its own
        other.reset()
        return other

    def reset(self) -> None:
        self._state = {
            name: self._upload(np.zeros(info["shape"], dtype=info["dtype"]))
            for name, info in self._state_infos.items()
        }

    def advance_empty(self) -> None:
        # Only frames before the first tracked object get here; a host round trip of the small
        # state keeps one implementation of the shift (advance_window).
        shifted = advance_window({n: self._state[n].numpy() for n in STATE_NAMES})
        self._state = {n: self._upload(shifted[n]) for n in STATE_NAMES}

    def read_state(self) -> dict[str, np.ndarray]:
        return {n: self._state[n].numpy().copy() for n in STATE_NAMES}

    def write_state(self, state: dict[str, np.ndarray]) -> None:
        self._state = {
            n: self._upload(np.asarray(state[n]).astype(self._state_infos[n]["dtype"]))
            for n in STATE_NAMES
        }

    def run(
        self, graph: str, frame: np.ndarray, annotation: np.ndarray | None = None
    ) -> FrameOutput:
        clock = StageClock()
        values = {"frame": self._upload(frame), **self._state}
        if annotation is not None:
            values["annotation"] = self._upload(annotation)
        clock.mark("H2D")
        for part in self.export.chain(graph):
            values.update(self._run_graph(part, values))
        clock.mark("compute")
        labels, scores = values["labels"], values["scores"]
        self._state = {n: values[n + NEXT_SUFFIX] for n in STATE_NAMES}
        out = FrameOutput(
            labels=labels.numpy(),
            scores=scores.numpy() if self.with_scores else None,
            active=None if graph == "step" else self._state["active"].numpy()[0],
        )
        clock.mark("D2H")
        out.timings = clock.timings
        return out

    def _run_graph(self, graph: str, values: dict[str, object]) -> dict[str, object]:
        """Run one graph file on the named device values it takes; its outputs, by name, stay on
        the device (downloaded later, so that D2H is timed on its own)."""
        session = self._sessions[graph]
        binding = session.io_binding()
        for info in self.export.io(graph, "inputs"):
            binding.bind_ortvalue_input(info["name"], values[info["name"]])
        names = [info["name"] for info in self.export.io(graph, "outputs")]
        for name in names:
            binding.bind_output(name, self._device_type)
        session.run_with_iobinding(binding)
        return dict(zip(names, binding.get_outputs()))
