"""Where and why the first diverging frame diverges.

Two questions, both asked with the candidate fed the *reference's* input state for that frame:

1. **Computed here or inherited?** The candidate backend re-runs the frame's graph from the
   reference's state. If its outputs (labels, scores, next state) are then within tolerance, the
   frame's own computation agrees and the divergence came in with the candidate's state
   ("inherited state"); otherwise this frame's computation differs ("computed here").
2. **Which module first?** The reference's graph runs with forward hooks on the probe points
   (``softmask.export.probes.probe_points``); the candidate runs the same graph with those
   outputs added (an ONNX export of that one graph for an exported candidate, hooks for a torch
   candidate). Module outputs are compared in execution order; the first whose max abs
   difference relative to the reference output's largest magnitude exceeds the module tolerance
   is the culprit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from softmask.eval.divergence import (
    Divergence,
    DivergenceContext,
    StateDiff,
    Tolerances,
    over_tolerance,
    score_difference,
    state_differences,
)
from softmask.export.frame_graphs import (
    FLOAT_STATE,
    GRAPH_MODULES,
    NEXT_SUFFIX,
    STATE_NAMES,
    StreamSpec,
)
from softmask.export.mixed_precision import PrecisionPlan
from softmask.export.probes import (
    PROBE_PREFIX,
    ProbeRecorder,
    export_probed_graph,
    probe_points,
)
from softmask.model.hodor import HodorModel
from softmask.runtime.backend import Backend

logger = logging.getLogger(__name__)

COMPUTED = "computed here"
INHERITED = "inherited state"


@dataclass
class GraphRun:
    """One graph run with probes: regular outputs and the probes' (label, float32 array)."""

    labels: np.ndarray
    scores: np.ndarray
    state: dict[str, np.ndarray]
    probes: list[tuple[str, np.ndarray]]


class ProbeSource(Protocol):
    """Runs one frame graph from a given state with probe outputs."""

    description: str

    def run(
        self,
        graph: str,
        frame: np.ndarray,
        annotation: np.ndarray | None,
        state: dict[str, np.ndarray],
    ) -> GraphRun: ...


def _graph_inputs(frame, annotation) -> list[np.ndarray]:
    return [frame] if annotation is None else [frame, annotation]


class TorchProbes:
    """Probes by forward hooks on ``model`` (eval mode), running the torch graph modules."""

    def __init__(self, model: HodorModel, spec: StreamSpec) -> None:
        self.model = model.eval()
        self.spec = spec
        self.description = "torch (forward hooks)"

    @torch.no_grad()
    def run(self, graph, frame, annotation, state) -> GraphRun:
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        inputs = [torch.from_numpy(np.ascontiguousarray(a)).to(device)
                  for a in _graph_inputs(frame, annotation)]
        for name in STATE_NAMES:
            tensor = torch.from_numpy(np.asarray(state[name])).to(device)
            inputs.append(tensor.to(dtype) if name in FLOAT_STATE else tensor.bool())
        recorder = ProbeRecorder(self.model, probe_points(self.model))
        try:
            labels, scores, *next_state = GRAPH_MODULES[graph](self.model, self.spec)(*inputs)
        finally:
            recorder.remove()
        probes = [(label, t.float().cpu().numpy()) for label, t in
                  zip(recorder.labels, recorder.tensors)]
        return GraphRun(
            labels.cpu().numpy(),
            scores.float().cpu().numpy(),
            {n: t.cpu().numpy() for n, t in zip(STATE_NAMES, next_state)},
            probes,
        )


class OnnxProbes:
    """Probes by exporting the graph with probe outputs (``export_probed_graph``, same precision
    plan as the candidate export) and running it in ONNX Runtime. Graphs are exported into
    ``work_dir`` on first use."""

    def __init__(
        self,
        model: HodorModel,
        spec: StreamSpec,
        plan: PrecisionPlan,
        work_dir: str | Path,
        providers: list[str] | None = None,
    ) -> None:
        self.model, self.spec, self.plan = model, spec, plan
        self.work_dir = Path(work_dir)
        self.providers = providers or ["CPUExecutionProvider"]
        self.description = f"onnxruntime ({plan.name} graph with probe outputs)"
        self._sessions: dict[str, tuple[Any, list[str]]] = {}

    def _session(self, graph: str):
        if graph not in self._sessions:
            import onnxruntime as ort

            path = self.work_dir / f"{graph}-{self.plan.name}-probed.onnx"
            labels = export_probed_graph(self.model, self.spec, graph, path, self.plan)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=self.providers)
            self._sessions[graph] = (session, labels)
        return self._sessions[graph]

    def run(self, graph, frame, annotation, state) -> GraphRun:
        session, labels = self._session(graph)
        feeds = {}
        types = {i.name: i.type for i in session.get_inputs()}
        for name, value in zip(("frame", "annotation"), _graph_inputs(frame, annotation)):
            feeds[name] = np.ascontiguousarray(value)
        for name in STATE_NAMES:
            if name in FLOAT_STATE:
                dtype = np.float16 if types[name] == "tensor(float16)" else np.float32
            else:
                dtype = bool
            feeds[name] = np.asarray(state[name]).astype(dtype)
        names = [o.name for o in session.get_outputs()]
        outputs = dict(zip(names, session.run(None, feeds)))
        probes = [(label, outputs[f"{PROBE_PREFIX}{i}"].astype(np.float32))
                  for i, label in enumerate(labels)]
        return GraphRun(
            outputs["labels"],
            outputs["scores"].astype(np.float32),
            {n: outputs[n + NEXT_SUFFIX] for n in STATE_NAMES},
            probes,
        )


@dataclass
class ModuleDiff:
    """One probed module output: max abs difference, the reference's largest magnitude (scale),
    their ratio, and whether the ratio exceeds the module tolerance."""

    module: str
    max_abs_diff: float
    scale: float
    relative: float
    over: bool


@dataclass
class Localization:
    """Verdict and module table for the first diverging frame (see the module docstring).

    rerun: quantities still over tolerance when the candidate re-ran the frame from the
        reference's input state (empty: "inherited state").
    input_state: difference between the two backends' input states for that frame.
    notes: why a part could not be done, or caveats (e.g. a re-export that does not reproduce
        the candidate).
    """

    frame: int
    graph: str
    quantity: str
    verdict: str | None
    rerun: list[Divergence] = field(default_factory=list)
    input_state: dict[str, StateDiff] = field(default_factory=dict)
    modules: list[ModuleDiff] = field(default_factory=list)
    culprit: str | None = None
    module_tolerance: float | None = None
    reference_probes: str | None = None
    candidate_probes: str | None = None
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The module table as text: module, max abs diff, relative to scale, over or not."""
        if not self.modules:
            return "(no module table)"
        width = max(len(m.module) for m in self.modules)
        lines = [f"{'module':<{width}}  {'max |diff|':>11}  {'relative':>10}"]
        for m in self.modules:
            mark = "  <- first over tolerance" if m.module == self.culprit else (
                "  over" if m.over else "")
            lines.append(f"{m.module:<{width}}  {m.max_abs_diff:>11.3e}  {m.relative:>10.3e}{mark}")
        return "\n".join(lines)


def _compare_module(label: str, ref: np.ndarray, cand: np.ndarray, tolerance: float) -> ModuleDiff:
    if ref.shape != cand.shape:
        return ModuleDiff(label, float("inf"), float("nan"), float("inf"), True)
    delta = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    diff = float(np.where(np.isnan(delta), np.inf, delta).max(initial=0.0))
    scale = float(np.abs(ref).max(initial=0.0))
    if scale > 0:
        relative = diff / scale
    else:
        relative = 0.0 if diff == 0 else float("inf")
    return ModuleDiff(label, diff, scale, relative, relative > tolerance)


def compare_modules(
    reference: GraphRun, candidate: GraphRun, tolerance: float
) -> tuple[list[ModuleDiff], str | None]:
    """Module rows in the reference's execution order and the first over ``tolerance``."""
    cand = dict(candidate.probes)
    rows = [
        _compare_module(label, tensor, cand[label], tolerance)
        for label, tensor in reference.probes
        if label in cand
    ]
    culprit = next((r.module for r in rows if r.over), None)
    return rows, culprit


def _divergences_of(context: DivergenceContext, labels, scores, state, tolerances) -> list:
    d = context.divergence
    agreement = float((labels == context.reference_labels).mean())
    score_diff = score_difference(context.reference_scores, scores)
    diffs = state_differences(context.reference_state_out, state)
    return over_tolerance(d.frame, d.graph, agreement, score_diff, diffs, tolerances)


def _rerun_candidate(candidate: Backend, context: DivergenceContext) -> tuple[Any, dict]:
    """Run the diverging frame on ``candidate`` from the reference's input state; the
    candidate's own state is put back afterwards."""
    saved = candidate.read_state()
    try:
        candidate.write_state(context.reference_state_in)
        out = candidate.run(context.divergence.graph, context.frame, context.annotation)
        return out, candidate.read_state()
    finally:
        candidate.write_state(saved)


def _reproduction_gap(quantity: str, output, state, probed: GraphRun) -> float | None:
    """How far the probed graph is from the candidate backend in ``quantity`` (same state in):
    disagreeing fraction for labels, max abs difference otherwise."""
    if quantity == "labels":
        return float((probed.labels != output.labels).mean())
    if quantity == "scores":
        return score_difference(output.scores, probed.scores)
    return state_differences(state, probed.state)[quantity].max


def localize(
    context: DivergenceContext,
    candidate: Backend,
    tolerances: Tolerances,
    reference_probes: ProbeSource | None = None,
    candidate_probes: ProbeSource | None = None,
) -> Localization:
    """Verdict (computed here / inherited state) and, given both probe sources, the module table.

    Args:
        context: the first diverging frame, as ``compare_backends`` recorded it.
        candidate: the candidate backend (``read_state``/``write_state`` needed for the verdict).
        tolerances: as in the comparison; ``tolerances.module`` for module outputs.
        reference_probes, candidate_probes: how to run the frame's graph with probes.
    """
    d = context.divergence
    result = Localization(d.frame, d.graph, d.quantity, None, module_tolerance=tolerances.module)
    result.input_state = state_differences(context.reference_state_in, context.candidate_state_in)
    if d.graph not in GRAPH_MODULES:
        result.notes.append(f"frame {d.frame} ran no graph ({d.graph}); nothing to re-run")
        return result
    rerun_output = None
    if hasattr(candidate, "write_state") and hasattr(candidate, "read_state"):
        rerun_output, rerun_state = _rerun_candidate(candidate, context)
        if rerun_output.scores is None:
            result.notes.append("the candidate gives no scores; the re-run compares labels/state")
        result.rerun = _divergences_of(
            context, rerun_output.labels, rerun_output.scores, rerun_state, tolerances
        )
        result.verdict = COMPUTED if result.rerun else INHERITED
        carried = over_tolerance(d.frame, d.graph, 1.0, None, result.input_state, tolerances)
        if result.verdict == INHERITED and not carried:
            result.notes.append(
                "the candidate's state read after the previous frame was within tolerance of the "
                "reference's: it changed between frames, outside the graphs"
            )
    else:
        result.notes.append(f"backend {candidate.name} cannot load a state; no verdict")
    if reference_probes is None or candidate_probes is None:
        missing = "reference" if reference_probes is None else "candidate"
        result.notes.append(f"no module table: the {missing} backend cannot be probed")
        return result
    ref_run = reference_probes.run(d.graph, context.frame, context.annotation,
                                   context.reference_state_in)
    cand_run = candidate_probes.run(d.graph, context.frame, context.annotation,
                                    context.reference_state_in)
    result.reference_probes = reference_probes.description
    result.candidate_probes = candidate_probes.description
    result.modules, result.culprit = compare_modules(ref_run, cand_run, tolerances.module)
    if rerun_output is not None:
        gap = _reproduction_gap(d.quantity, rerun_output, rerun_state, cand_run)
        divergence = next((r.value for r in result.rerun if r.quantity == d.quantity), None)
        if divergence is not None and d.quantity == "labels":
            divergence = 1.0 - divergence  # agreement -> disagreeing fraction, as the gap
        if gap is not None and divergence is not None and gap > 0.5 * abs(divergence):
            result.notes.append(
                f"the probed candidate graph differs from the candidate backend by {gap:.3g} in "
                f"{d.quantity} from the same state, comparable to the divergence itself: was the "
                "export made from another checkpoint or precision?"
            )
    if result.culprit is None:
        result.notes.append(
            f"no module output exceeds {tolerances.module:g} (relative) from the reference's state"
        )
    return result
