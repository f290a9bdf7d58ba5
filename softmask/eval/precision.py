"""Mixed-precision search judged over time: which fp16 export keeps the task metric.

Candidates are exports of one model (``softmask.export.mixed_precision``): fp32, fp16 everywhere,
and fp16 with groups kept in fp32. Each runs the whole video on the chosen backend next to the torch
fp32 reference (``compare_backends``), and is scored by

- the metric: J&F with ground truth, else the mean label agreement with the reference;
- its drop from the fp32 candidate's metric (the bound ``max_drop`` applies to it);
- worst-frame label agreement, the first divergence (fp16 tolerances), and per-frame latency
  (p50 of the candidate's wall time per frame, on this machine and backend).

The search is greedy from the culprits: while the current candidate misses the bound, its first
diverging frame is localised (``softmask.eval.localize``), and the groups whose islands contain
the culprit module are each tried on top of the current groups (every remaining group when
there is no culprit to follow); the best of those becomes the current candidate. The chosen
export is the one meeting the bound with the fewest fp32 groups (fp32 counts as all of them),
then the lowest latency.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from softmask.errors import InputError
from softmask.eval.divergence import Divergence, Tolerances
from softmask.eval.parity import ParityReport, compare_backends, read_video
from softmask.export.plan import FP32_GROUPS, PrecisionPlan
from softmask.export.spec import StreamSpec
from softmask.files import atomic_dir
from softmask.runtime.factory import backends_where, capabilities, check_backend_available
from softmask.runtime.settings import RunSettings

if TYPE_CHECKING:
    from softmask.model.hodor import HodorModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 0.005
REPORT_JSON = "precision.json"
REPORT_MD = "precision.md"
BEST_EXPORT = "export"


@dataclass
class CandidateResult:
    """One candidate's figures (see the module docstring); ``culprit`` is filled when the search
    localised its first divergence."""

    name: str
    fp32_groups: list[str]
    metric: float
    metric_drop: float | None = None
    meets_bound: bool | None = None
    jf: float | None = None
    mean_agreement: float = 1.0
    worst_agreement: float = 1.0
    worst_frame: int | None = None
    first_divergence: Divergence | None = None
    latency_p50_ms: float | None = None
    culprit: str | None = None
    culprit_groups: list[str] = field(default_factory=list)
    verdict: str | None = None
    export_dir: str | None = None

    @property
    def plan(self) -> PrecisionPlan:
        return PrecisionPlan.parse(self.name)


@dataclass
class PrecisionReport:
    """Every candidate in the order evaluated, the bound, and the chosen one."""

    backend: str
    device: str
    metric: str
    max_drop: float
    candidates: list[CandidateResult]
    best: str
    best_export: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        """The candidate table (Markdown)."""
        lines = [
            (f"Precision search on {self.backend} ({self.device}); metric: {self.metric}; "
            f"bound: drop <= {self.max_drop}; chosen: **{self.best}**"),
            "",
            (f"| candidate | {self.metric} | drop | within bound | worst-frame agreement "
            "| first divergence | culprit | p50 ms/frame |"),
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in self.candidates:
            first = "none"
            if c.first_divergence is not None:
                d = c.first_divergence
                first = f"frame {d.frame} {d.quantity} ({d.value:.3g})"
            latency = "" if c.latency_p50_ms is None else f"{c.latency_p50_ms:.1f}"
            drop = "" if c.metric_drop is None else f"{c.metric_drop:+.4f}"
            worst = f"{c.worst_agreement:.5f}" + (
                "" if c.worst_frame is None else f" (frame {c.worst_frame})")
            lines.append(
                f"| {c.name} | {c.metric:.4f} | {drop} | {'yes' if c.meets_bound else 'no'} | "
                f"{worst} | {first} | {c.culprit or ''} | {latency} |"
            )
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``precision.json`` and ``precision.md`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / REPORT_JSON, out / REPORT_MD
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        md_path.write_text(self.markdown())
        return json_path, md_path


def _cost(candidate: CandidateResult) -> tuple[int, float]:
    plan = candidate.plan
    groups = len(plan.fp32_groups) if plan.fp16 else len(FP32_GROUPS) + 1
    return groups, candidate.latency_p50_ms if candidate.latency_p50_ms is not None else np.inf


def choose_best(candidates: Sequence[CandidateResult]) -> CandidateResult:
    """The candidate meeting the bound with the fewest fp32 groups, then the lowest latency."""
    meeting = [c for c in candidates if c.meets_bound]
    if not meeting:
        raise InputError("no candidate meets the bound, not even fp32 (is the metric defined?)")
    return min(meeting, key=_cost)


def greedy_search(
    evaluate: Callable[[PrecisionPlan], CandidateResult],
    localize_culprit: Callable[[CandidateResult], None],
    max_drop: float,
    groups: Sequence[str] = FP32_GROUPS,
) -> list[CandidateResult]:
    """Evaluate fp32, fp16, then fp16 with fp32 islands chosen greedily from the culprits.

    Args:
        evaluate: exports and scores one plan; returns its result with ``metric`` set.
        localize_culprit: fills ``culprit`` and ``culprit_groups`` of a candidate that misses the
            bound (left empty when no module is over tolerance).
        max_drop: largest allowed drop of the metric from fp32.
        groups: the groups the search may keep in fp32.

    Returns:
        Every candidate evaluated, in order, with ``metric_drop`` and ``meets_bound`` set.
    """
    results: list[CandidateResult] = []

    def run(plan: PrecisionPlan) -> CandidateResult:
        result = evaluate(plan)
        baseline = results[0].metric if results else result.metric
        result.metric_drop = baseline - result.metric
        result.meets_bound = bool(result.metric_drop <= max_drop)
        results.append(result)
        logger.info("precision candidate %s: metric %.4f, drop %+.4f", result.name,
                    result.metric, result.metric_drop)
        return result

    run(PrecisionPlan(fp16=False))
    current = run(PrecisionPlan(fp16=True))
    tried = {r.name for r in results}
    while not current.meets_bound:
        localize_culprit(current)
        kept = set(current.plan.fp32_groups)
        options = [g for g in current.culprit_groups if g in groups and g not in kept]
        if not options:
            options = [g for g in groups if g not in kept]
        plans = [current.plan.with_group(g) for g in options]
        plans = [p for p in plans if p.name not in tried]
        if not plans:
            break
        step = [run(p) for p in plans]
        tried.update(p.name for p in plans)
        current = min(step, key=lambda r: (not r.meets_bound, r.metric_drop, _cost(r)))
    return results


def needed_graphs(annotations: Mapping[int, np.ndarray]) -> tuple[str, ...]:
    """The graphs a video with these annotations can run: init and step always, annotate when a
    second frame carries objects (candidates export only these; the chosen one is completed)."""
    annotated = sum(1 for a in annotations.values() if a.any())
    return ("init", "step", "annotate") if annotated > 1 else ("init", "step")


def complete_export(model: HodorModel, folder: Path, spec: StreamSpec, plan: PrecisionPlan):
    """Export the graphs ``folder`` lacks and rewrite its manifest, so it loads as a full export."""
    from softmask.export.spec import GRAPH_NAMES, SHARED_GRAPHS
    from softmask.export.streaming import export_graphs, write_manifest

    names = SHARED_GRAPHS
    present = {n: folder / f"{n}.onnx" for n in names if (folder / f"{n}.onnx").is_file()}
    missing = [n for n in GRAPH_NAMES if n not in present]
    # Exporting any per-frame graph writes the features graph again (the same weights).
    graphs = {**present, **export_graphs(model, folder, spec, plan, missing)}
    return write_manifest(folder, model, spec, plan, {n: graphs[n] for n in names})


class _Evaluator:
    """Exports each plan into ``work_dir`` and compares it with the torch reference, running the
    candidates on ``settings``' backend (its providers, engine cache and threads)."""

    def __init__(self, model, frames, annotations, truth, spec, settings: RunSettings,
                 work_dir: Path) -> None:
        from softmask.runtime.factory import create_backend

        self.model, self.frames, self.annotations, self.truth = model, frames, annotations, truth
        self.spec, self.settings, self.work_dir = spec, settings, work_dir
        self.reference = create_backend("torch", model=model, spec=spec, with_scores=True)
        self.runs: dict[str, tuple[Any, ParityReport]] = {}
        self.device = ""

    def evaluate(self, plan: PrecisionPlan) -> CandidateResult:
        from softmask.export.streaming import export_graphs, write_manifest
        from softmask.runtime.factory import create_backend

        folder = self.work_dir / plan.name
        names = needed_graphs(self.annotations)
        graphs = export_graphs(self.model, folder, self.spec, plan, names)
        export = write_manifest(folder, self.model, self.spec, plan, graphs)
        s = self.settings
        backend = create_backend(s.backend, export=export, with_scores=True,
                                 providers=list(s.providers) if s.providers else None,
                                 engine_cache_dir=s.engine_cache_dir, threads=s.threads)
        self.device = backend.device
        report = compare_backends(
            self.reference, backend, self.frames, self.annotations, self.truth,
            tolerances=Tolerances.for_precision(plan.precision),
        )
        self.runs[plan.name] = (backend, report)
        agreements = [f.label_agreement for f in report.frames]
        worst = int(np.argmin(agreements))
        times = [f.candidate_ms for f in report.frames if f.candidate_ms is not None]
        mean_agreement = float(np.mean(agreements))
        return CandidateResult(
            name=plan.name,
            fp32_groups=list(plan.fp32_groups),
            metric=report.jf_candidate if self.truth is not None else mean_agreement,
            jf=report.jf_candidate,
            mean_agreement=mean_agreement,
            worst_agreement=float(agreements[worst]),
            worst_frame=worst,
            first_divergence=report.first_divergence,
            latency_p50_ms=float(np.percentile(times, 50)) if times else None,
            export_dir=str(export.directory),
        )

    def localize_culprit(self, result: CandidateResult) -> None:
        from softmask.eval.localize import OnnxProbes, TorchProbes, localize
        from softmask.export.mixed_precision import groups_of_module

        backend, report = self.runs[result.name]
        if report.context is None:
            return
        plan = result.plan
        candidate_probes = None
        if capabilities(self.settings.backend).probes_graphs:
            candidate_probes = OnnxProbes(self.model, self.spec, plan,
                                          self.work_dir / "localise", self.settings.providers)
        found = localize(report.context, backend, Tolerances.for_precision(plan.precision),
                         TorchProbes(self.model, self.spec), candidate_probes)
        result.verdict = found.verdict
        result.culprit = found.culprit
        if found.culprit is not None:
            result.culprit_groups = groups_of_module(found.culprit, self.model)


@dataclass(frozen=True)
class PrecisionOptions:
    """What ``precision_video`` adds to the candidates' ``RunSettings``.

    ground_truth [--ground-truth]: folder of label PNGs named like the frames; the metric is
        then J&F, else the label agreement with fp32.
    max_drop [--max-jf-drop]: largest allowed drop of the metric from fp32.
    work_dir [--work-dir]: keeps every candidate's export (default: a temporary folder, removed
        before returning).
    """

    ground_truth: str | Path | None = None
    max_drop: float = DEFAULT_MAX_DROP
    work_dir: str | Path | None = None


def _check_backend(settings: RunSettings) -> RunSettings:
    """Refuse settings that would not take effect (``RunSettings.check``; a backend that runs no
    export; export flags, since the search exports every candidate itself), then check the
    backend runs here (before any export)."""
    exporters = backends_where(lambda c: c.exports_graphs)
    if settings.backend not in exporters:
        raise InputError(f"--backend {settings.backend}: the search compares exports; choose "
                         f"{' or '.join(exporters)}")
    for flag, given in (("--export-dir", settings.export_dir is not None),
                        ("--cache-dir", settings.cache_dir is not None), ("--fp16", settings.fp16)):
        if given:
            raise InputError(f"{flag}: the search exports every candidate itself (fp32, fp16 "
                             f"and mixed); drop {flag}")
    settings.check()
    check_backend_available(settings.backend, settings.providers)
    return settings


def search_precision(
    model: HodorModel,
    frames: Sequence[np.ndarray],
    annotations: Mapping[int, np.ndarray],
    spec: StreamSpec,
    settings: RunSettings,
    ground_truth: Mapping[int, np.ndarray] | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    work_dir: str | Path | None = None,
) -> PrecisionReport:
    """Run the greedy search for one video, the candidates on ``settings``' backend (its
    providers, engine cache and threads; the stream settings are ``spec``'s). Candidate exports
    (only the graphs the video needs, ``needed_graphs``) stay in ``work_dir``; when None, a
    temporary folder is used and removed before returning, and ``best_export`` is None
    (``precision_video`` completes and keeps it)."""
    _check_backend(settings)
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="softmask-precision-")) if own_work else Path(work_dir)
    try:
        evaluator = _Evaluator(model, list(frames), dict(annotations), ground_truth, spec,
                               settings, work)
        results = greedy_search(evaluator.evaluate, evaluator.localize_culprit, max_drop)
        best = choose_best(results)
        return PrecisionReport(
            backend=settings.backend,
            device=evaluator.device,
            metric="J&F" if ground_truth is not None else "label agreement with fp32",
            max_drop=max_drop,
            candidates=results,
            best=best.name,
            best_export=None if own_work else best.export_dir,
        )
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def precision_video(
    source: str | Path,
    annotations: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    settings: RunSettings | None = None,
    options: PrecisionOptions | None = None,
) -> PrecisionReport:
    """``search_precision`` on a video (what ``softmask run`` reads) with ``settings``' backend
    (default ONNX Runtime), checkpoint and stream settings; writes ``precision.json``,
    ``precision.md`` and the chosen export (``export/``) into ``out_dir``.

    Raises:
        InputError: unreadable inputs, settings that would not take effect, or
            ``out_dir/export`` already exists.
        BackendUnavailable: the backend cannot run here (checked before any export).
    """
    from softmask.runtime.factory import resolve_model

    settings = settings or RunSettings()
    options = options or PrecisionOptions()
    out = Path(out_dir)
    if (out / BEST_EXPORT).exists():
        raise InputError(f"{out / BEST_EXPORT} exists; remove it or choose another --out")
    if options.max_drop < 0:
        raise InputError(f"--max-jf-drop must be >= 0, got {options.max_drop}")
    _check_backend(settings)
    frames, annotations, truth = read_video(source, annotations, options.ground_truth)
    largest = max(int(a.max()) for a in annotations.values())
    height, width, _ = frames[0].shape
    spec = settings.spec(height, width, largest)
    model = resolve_model(settings.checkpoint)
    own_work = options.work_dir is None
    work = (Path(tempfile.mkdtemp(prefix="softmask-precision-")) if own_work
            else Path(options.work_dir))
    try:
        report = search_precision(model, frames, annotations, spec, settings, truth,
                                  options.max_drop, work)
        best_dir = next(c.export_dir for c in report.candidates if c.name == report.best)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_dir(out / BEST_EXPORT, noun="export") as staging:
            shutil.copytree(best_dir, staging, dirs_exist_ok=True)
            complete_export(model, staging, spec, PrecisionPlan.parse(report.best))
        report.best_export = str(out / BEST_EXPORT)
        report.save(out)
        return report
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
