"""Accuracy parity between two runtime backends on the same video, over time.

Both backends see the same frames and annotations in order (each through its own
``VideoStream``). Per frame: the fraction of pixels whose labels agree, the largest absolute
difference of the per-object scores (the values the final argmax compares), and for each state
tensor the backends carry to the next frame (``*_next``) the max and mean absolute difference
(``softmask.eval.divergence``). With ground truth, each backend is also scored against it (J and
F per frame). The report names the first frame and quantity over tolerance and whether the
difference grows over the video; ``softmask.eval.localize`` then explains that frame.
User docs: docs/parity.md.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from softmask.data.io import VOID_LABEL
from softmask.errors import BackendUnavailable, InputError
from softmask.eval.davis import frame_j_and_f
from softmask.eval.davis import mean_region_similarity as mean_iou  # noqa: F401 (re-export)
from softmask.eval.divergence import (
    Divergence,
    DivergenceContext,
    StateDiff,
    Tolerances,
    describe,
    descriptor_mean_difference,
    drift,
    over_tolerance,
    score_difference,
    state_differences,
)
from softmask.optional import require_torch
from softmask.runtime.annotations import resolve_annotations
from softmask.runtime.backend import Backend
from softmask.runtime.factory import backends_where, capabilities
from softmask.runtime.sources import open_source
from softmask.runtime.stream import VideoStream

if TYPE_CHECKING:
    from softmask.eval.localize import Localization
    from softmask.export.manifest import StreamingExport
    from softmask.runtime.settings import RunSettings

logger = logging.getLogger(__name__)

# Defaults for fp32 exports on the same kind of device: label flips only where two objects'
# scores tie to within float32 rounding, and scores as close as float32 summation order allows.
DEFAULT_MIN_AGREEMENT = Tolerances.min_agreement
DEFAULT_SCORE_TOLERANCE = Tolerances.score
@dataclass
class FrameParity:
    """One frame: which graph ran, label agreement (fraction of pixels), score difference (None if
    a backend gave no scores), each state tensor's difference (None if a backend cannot read its
    state), each backend's J (``iou_*``, mean per-object IoU) and F with the ground truth (if
    given), and the candidate's wall time for the frame (ms; None when no graph ran)."""

    frame: int
    graph: str
    label_agreement: float
    max_abs_score_diff: float | None
    iou_reference: float | None = None
    iou_candidate: float | None = None
    f_reference: float | None = None
    f_candidate: float | None = None
    state: dict[str, StateDiff] | None = None
    candidate_ms: float | None = None


# Report fields saved under another key, so that reports saved earlier keep their keys.
_JSON_KEYS = {"localization": "localisation"}


@dataclass
class ParityReport:
    """Per-frame results, summary, the tolerances used and what failed (empty when it passed).

    first_divergence: the first frame and quantity over tolerance (None: none); drift: whether
    the descriptor difference grows (``softmask.eval.divergence.drift``); localization: filled
    by ``parity_video`` (or ``localize``) for the first diverging frame. J&F (``jf_*``) is the
    mean of J and F over the ground-truth frames except the first and the last (as DAVIS).
    """

    reference: str
    candidate: str
    frames: list[FrameParity]
    min_agreement: float
    max_abs_score_diff: float | None
    min_agreement_required: float
    score_tolerance: float
    failures: list[str] = field(default_factory=list)
    mean_iou_reference: float | None = None
    mean_iou_candidate: float | None = None
    state_tolerance: float | None = None
    module_tolerance: float | None = None
    candidate_precision: str | None = None
    first_divergence: Divergence | None = None
    drift: dict[str, Any] = field(default_factory=dict)
    jf_reference: float | None = None
    jf_candidate: float | None = None
    localization: Localization | None = None
    context: DivergenceContext | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (non-finite numbers, e.g. a NaN difference, as strings); keys are the
        field names, except ``localization``, saved as ``localisation`` (the key reports have
        always had)."""
        data = {_JSON_KEYS.get(f.name, f.name): _plain(getattr(self, f.name))
                for f in fields(self) if f.name != "context"}
        return {**data, "passed": self.passed}

    def save(self, path: str | Path) -> None:
        """Write the report as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def summary(self, shown: int = 10, saved: bool = False) -> str:
        """What the command line prints (lines, no trailing newline): the totals, J&F, drift,
        the first divergence and its localisation, the first ``shown`` failing frames, and the
        verdict with the tolerances it used. ``saved``: the report is saved as JSON (the hint
        on failing frames beyond ``shown`` says where they all are)."""
        lines = [(f"frames: {len(self.frames)}, lowest label agreement "
                  f"{self.min_agreement:.6f}, largest score difference {self.max_abs_score_diff}")]
        if self.jf_reference is not None:
            lines.append(f"J&F: {self.reference} {self.jf_reference:.4f}, {self.candidate} "
                         f"{self.jf_candidate:.4f}")
        trend = self.drift
        if trend.get("slope_per_frame") is not None:
            lines.append(f"drift: {trend['trend']} ({trend['quantity']}: {trend['start']:.3g} -> "
                         f"{trend['end']:.3g} over {trend['frames']} frames)")
        else:
            lines.append(f"drift: {trend.get('trend')}")
        first = self.first_divergence
        lines.append(f"first divergence: "
                     f"{describe(first) + f' ({first.graph})' if first else 'none'}")
        loc = self.localization
        if loc is not None:
            lines.append(f"frame {loc.frame} ({loc.graph}) from the reference's input state: "
                         f"{loc.verdict or 'no verdict'}")
            if loc.modules:
                lines += [loc.table(), f"first culprit: {loc.culprit or 'none'}"]
            lines += [f"note: {note}" for note in loc.notes]
        by_frame: dict[str, list[str]] = {}
        for failure in self.failures:  # "frame T: what" -> the frame's failures on one line
            where, _, what = failure.partition(": ")
            by_frame.setdefault(where, []).append(what)
        for where, what in list(by_frame.items())[:shown]:
            graph = self.frames[int(where.split()[1])].graph
            lines.append(f"FAIL {where} ({graph}): " + "; ".join(what))
        if len(by_frame) > shown:
            hint = " (all of them in --report)" if saved else " (--report lists all)"
            lines.append(f"... and {len(by_frame) - shown} more failing frames{hint}")
        lines.append(
            f"parity {self.reference} vs {self.candidate}: {'PASS' if self.passed else 'FAIL'} "
            f"(label agreement >= {self.min_agreement_required}, score diff <= "
            f"{self.score_tolerance}, descriptor diff <= {self.state_tolerance})"
        )
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _jf_summary(rows: list[FrameParity], side: str) -> float | None:
    scored = [r for r in rows if getattr(r, f"iou_{side}") is not None]
    if len(scored) >= 3:
        scored = scored[1:-1]
    j = _mean(getattr(r, f"iou_{side}") for r in scored)
    f = _mean(getattr(r, f"f_{side}") for r in scored)
    return None if j is None or f is None else (j + f) / 2


def _read_state(backend: Backend) -> dict[str, np.ndarray] | None:
    reader = getattr(backend, "read_state", None)
    return reader() if reader is not None else None


def compare_backends(
    reference: Backend,
    candidate: Backend,
    frames: Sequence[np.ndarray],
    annotations: Mapping[int, np.ndarray],
    ground_truth: Mapping[int, np.ndarray] | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    score_tolerance: float = DEFAULT_SCORE_TOLERANCE,
    tolerances: Tolerances | None = None,
) -> ParityReport:
    """Run one video through both backends and compare them frame by frame.

    Args:
        reference, candidate: backends built for the frames' size (create them with
            ``with_scores=True`` to compare scores; backends with ``read_state`` also get their
            state compared).
        frames: uint8 [H, W, 3] frames in order.
        annotations: frame index -> uint8 label map [H, W].
        ground_truth: frame index -> uint8 label map (255 = void) to score both against; objects
            1..(largest id in any ground-truth map) are scored.
        min_agreement, score_tolerance: used when ``tolerances`` is None (state and module
            tolerances then take ``Tolerances``' defaults).
        tolerances: every tolerance (``softmask.eval.divergence.Tolerances``).

    Returns:
        The report; ``failures`` names each quantity over tolerance at each frame, and
        ``context`` keeps what ``localize`` needs to re-run the first diverging frame.
    """
    tol = tolerances or Tolerances(min_agreement=min_agreement, score=score_tolerance)
    if (reference.spec.height, reference.spec.width) != (
        candidate.spec.height,
        candidate.spec.width,
    ):
        raise InputError(
            f"backends built for different frame sizes: {reference.name} "
            f"{reference.spec.height}x{reference.spec.width}, {candidate.name} "
            f"{candidate.spec.height}x{candidate.spec.width}"
        )
    gt_objects = 0
    if ground_truth:
        gt_objects = max(int(np.where(g == VOID_LABEL, 0, g).max()) for g in ground_truth.values())
    streams = VideoStream(reference), VideoStream(candidate)
    ref_state, cand_state = _read_state(reference), _read_state(candidate)
    results: list[FrameParity] = []
    failures: list[str] = []
    first: Divergence | None = None
    context: DivergenceContext | None = None
    for index, frame in enumerate(frames):
        ann = annotations.get(index)
        source = f"frame {index}"
        ref = streams[0].process(frame, ann, source=source)
        started = time.perf_counter()
        cand = streams[1].process(frame, ann, source=source)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        graph = streams[0].last_graph
        if streams[1].last_graph != graph:
            failures.append(
                f"frame {index}: the reference ran graph {graph!r}, the candidate "
                f"{streams[1].last_graph!r} (they disagree on which objects are tracked)"
            )
        agreement = float((ref.labels == cand.labels).mean())
        diff = score_difference(ref.scores, cand.scores)
        ref_next, cand_next = _read_state(reference), _read_state(candidate)
        state = None
        if ref_next is not None and cand_next is not None:
            state = state_differences(ref_next, cand_next)
        row = FrameParity(index, graph, agreement, diff, state=state,
                          candidate_ms=None if graph == "none" else elapsed_ms)
        if ground_truth is not None and index in ground_truth:
            row.iou_reference, row.f_reference = frame_j_and_f(
                ref.labels, ground_truth[index], gt_objects)
            row.iou_candidate, row.f_candidate = frame_j_and_f(
                cand.labels, ground_truth[index], gt_objects)
        found = over_tolerance(index, graph, agreement, diff, state, tol)
        failures.extend(describe(d) for d in found)
        if found and first is None:
            first = found[0]
            if ref_state is not None and cand_state is not None:
                context = DivergenceContext(
                    first, frame, ann if graph in ("init", "annotate") else None,
                    ref_state, cand_state, ref.labels, ref.scores, ref_next,
                )
        ref_state, cand_state = ref_next, cand_next
        results.append(row)
    diffs = [r.max_abs_score_diff for r in results if r.max_abs_score_diff is not None]
    tracked = [r for r in results if r.graph != "none" and r.state is not None]
    report = ParityReport(
        reference=reference.name,
        candidate=candidate.name,
        frames=results,
        min_agreement=min((r.label_agreement for r in results), default=1.0),
        max_abs_score_diff=max(diffs) if diffs else None,
        min_agreement_required=tol.min_agreement,
        score_tolerance=tol.score,
        failures=failures,
        mean_iou_reference=_mean(r.iou_reference for r in results),
        mean_iou_candidate=_mean(r.iou_candidate for r in results),
        state_tolerance=tol.state,
        module_tolerance=tol.module,
        candidate_precision=getattr(candidate, "precision", None),
        first_divergence=first,
        drift=drift([r.frame for r in tracked],
                    [descriptor_mean_difference(r.state) for r in tracked]),
        jf_reference=_jf_summary(results, "reference"),
        jf_candidate=_jf_summary(results, "candidate"),
        context=context,
    )
    logger.info(
        "parity %s vs %s: %d quantity/frame pair(s) over tolerance; first: %s",
        reference.name, candidate.name, len(failures), describe(first) if first else "none",
    )
    return report


def read_video(
    source: str | Path,
    annotations: str | Path | Sequence[str | Path],
    ground_truth: str | Path | None = None,
) -> tuple[list[np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray] | None]:
    """(frames, annotations, ground truth or None) of a source ``softmask run`` reads (a folder
    of frames, a video file, a URL) and annotation specs (``resolve_annotations``); ground truth
    is a folder of label PNGs named like the frames (by frame index for a video).

    Raises:
        InputError: the source or a file cannot be read, the source is live (its frames would
            differ between the backends), or the annotations hold no object.
    """
    specs = [annotations] if isinstance(annotations, (str, Path)) else list(annotations)
    with open_source(source) as frames_source:
        if frames_source.live:
            raise InputError(
                f"{frames_source.name}: parity runs the same frames through two backends; a live "
                "source cannot give them twice (record it to a file first)"
            )
        found = resolve_annotations(specs, frames_source)
        truth = (
            None if ground_truth is None else resolve_annotations([ground_truth], frames_source)
        )
        frames = [frame.rgb for frame in frames_source]
    if found.largest_id == 0:
        raise InputError(f"{', '.join(map(str, specs))}: the annotations contain no object "
                         "(all pixels 0)")
    return frames, found.labels, None if truth is None else truth.labels


@dataclass(frozen=True)
class ParityOptions:
    """What ``parity_video`` adds to the candidate's ``RunSettings``.

    reference [--reference]: the backend the candidate is compared with.
    ground_truth [--ground-truth]: folder of label PNGs named like the frames (by frame index
        for a video); adds J and F per frame per backend.
    work_dir [--work-dir]: keeps the graphs localization exports (default: a temporary folder,
        removed before returning).
    tolerances: every tolerance; None: ``Tolerances.for_precision`` of the candidate.
    localize [not --no-localize]: localize the first diverging frame.
    on_export: called with each graph's name while exporting (progress output).
    """

    reference: str = "torch"
    ground_truth: str | Path | None = None
    work_dir: str | Path | None = None
    tolerances: Tolerances | None = None
    localize: bool = True
    on_export: Callable[[str], None] | None = None


def _check_options(settings: RunSettings, options: ParityOptions) -> None:
    """Refuse options that apply to neither backend, naming the CLI flag (each backend's own
    settings are checked by ``RunSettings.check``); the backends' rows in
    ``softmask.runtime.factory``'s capability table decide."""
    reference, candidate = options.reference, settings.backend
    ref, cand = capabilities(reference), capabilities(candidate)
    exporters = " or ".join(backends_where(lambda c: c.exports_graphs))
    if settings.fp16 and not cand.exports_graphs:
        raise InputError(
            f"--fp16 exports the candidate in fp16, but the {candidate} candidate runs the "
            f"checkpoint as it is; use --candidate {exporters}"
        )
    if settings.fp16 and ref.exports_graphs:
        raise InputError(
            f"--fp16 with --reference {reference}: both backends would run the fp16 export; "
            "compare an fp16 candidate with --reference "
            f"{' or '.join(backends_where(lambda c: not c.exports_graphs))}"
        )
    if settings.providers and not (ref.takes_providers or cand.takes_providers):
        raise InputError(
            f"--providers applies to {' and '.join(backends_where(lambda c: c.takes_providers))}"
            ", which neither backend is"
        )
    if settings.engine_cache_dir is not None and not (
        ref.builds_engines_with(settings.providers) or cand.builds_engines_with(settings.providers)
    ):
        raise InputError(
            f"--engine-cache applies to {' and '.join(backends_where(lambda c: c.builds_engines))}"
            " and to --providers tensorrt, which neither backend uses"
        )
    if not (ref.exports_graphs or cand.exports_graphs):
        names = " and ".join(dict.fromkeys((reference, candidate)))
        for flag, value in (("--export-dir", settings.export_dir),
                            ("--cache-dir", settings.cache_dir), ("--work-dir", options.work_dir)):
            if value is not None:
                raise InputError(f"{flag} is for exported graphs; both backends are {names}")


def backend_settings(
    settings: RunSettings, reference: str, export: StreamingExport | None = None
) -> dict[str, RunSettings]:
    """Each backend's own settings (reference first; one entry when both are one backend),
    derived from the candidate's ``settings``: a backend gets the flags its capability row
    takes, and scores. An exported backend runs ``export`` (``settings.export_dir``, loaded)
    when given; the torch reference then runs the export's stream settings."""
    derived = {}
    for name in dict.fromkeys((reference, settings.backend)):
        can = capabilities(name)
        exported = can.exports_graphs
        own = replace(
            settings,
            backend=name,
            checkpoint=None if exported and export is not None else settings.checkpoint,
            export_dir=settings.export_dir if exported else None,
            fp16=settings.fp16 and exported,
            providers=settings.providers if can.takes_providers else None,
            engine_cache_dir=(settings.engine_cache_dir
                              if can.builds_engines_with(settings.providers) else None),
            cache_dir=settings.cache_dir if exported else None,
            with_scores=True,
        )
        if export is not None and not exported:
            spec = export.spec  # the torch reference runs the export's settings
            own = replace(own, num_objects=spec.num_objects, temporal_window=spec.temporal_window,
                          min_dim=spec.min_dim, max_dim=spec.max_dim)
        derived[name] = own
    return derived


def parity_video(
    source: str | Path,
    annotations: str | Path | Sequence[str | Path],
    settings: RunSettings | None = None,
    options: ParityOptions | None = None,
) -> ParityReport:
    """``compare_backends`` on a video (what ``softmask run`` reads, ``read_video``), then
    ``localize`` on the first diverging frame.

    ``settings`` are the candidate's (``settings.backend``; default ``RunSettings()``, ONNX
    Runtime), ``options.reference`` names the reference (default torch). Each backend is built
    as ``softmask run`` builds it (``prepare_backend``) from its own settings
    (``backend_settings``): the torch backend runs ``settings.checkpoint`` (a path, a
    HodorModel, or None for the bundled model); exported backends run ``settings.export_dir``,
    or an export of the same checkpoint from the export cache, made if missing at the video's
    size (``num_objects`` default: the largest annotated id). With ``export_dir`` the torch
    backend takes the export's stream settings. Both backends are checked before anything is
    exported.

    Raises:
        InputError: unreadable inputs, or options that would not take effect (naming the flag).
        BackendUnavailable: a backend cannot run here.
        ExportError: the export failed.
    """
    from softmask.export.manifest import load_streaming_export
    from softmask.runtime.factory import check_backend_available, resolve_model
    from softmask.runtime.settings import RunSettings, prepare_backend

    settings = settings or RunSettings()
    options = options or ParityOptions()
    reference, candidate = options.reference, settings.backend
    _check_options(settings, options)
    export = load_streaming_export(settings.export_dir) if settings.export_dir is not None else None
    derived = backend_settings(settings, reference, export)
    for setting in derived.values():
        setting.check()
    for name, setting in derived.items():
        check_backend_available(name, setting.providers)
    frames, labels, truth = read_video(source, annotations, options.ground_truth)
    largest = max(int(a.max()) for a in labels.values())
    height, width, _ = frames[0].shape
    prepared = {
        name: prepare_backend(setting, height, width, largest, options.on_export)
        for name, setting in derived.items()
    }
    backends = [prepared[reference].backend, prepared[candidate].backend]
    if reference == candidate:
        # Two streams of one backend kind: a second instance, so states stay separate.
        backends[1] = prepare_backend(derived[candidate], height, width, largest).backend
    tol = options.tolerances or Tolerances.for_precision(backends[1].precision)
    report = compare_backends(*backends, frames, labels, truth, tolerances=tol)
    if not options.localize or report.context is None:
        return report
    try:
        require_torch("localising the divergence (probing the model's modules)")
    except BackendUnavailable as error:
        logger.warning("%s; the report has no localisation", error)
        return report
    candidate_export = prepared[candidate].setup.get("export_dir")
    own_work = options.work_dir is None
    work = (Path(tempfile.mkdtemp(prefix="softmask-parity-")) if own_work
            else Path(options.work_dir))
    try:
        model = getattr(backends[0], "model", None) or resolve_model(settings.checkpoint)
        if candidate_export is not None:
            export = load_streaming_export(candidate_export, verify_hashes=False)
        report.localization = _localize(report, backends, model, export, work,
                                        settings.providers, tol)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _localize(report, backends, model, export, work, providers, tol) -> Localization:
    """``localize`` with the probe sources each backend's capability row allows; an exported
    candidate's probed graph is exported from ``model`` (the torch reference's weights) in
    ``export``'s plan."""
    from softmask.eval.localize import OnnxProbes, TorchProbes, localize

    spec = backends[1].spec

    def probes(backend):
        can = capabilities(backend.name)
        if not can.exports_graphs:
            return TorchProbes(backend.model, spec)
        if can.probes_graphs:
            return OnnxProbes(model, spec, export.plan, work, providers)
        return None

    reference, candidate = backends
    hooked = not capabilities(reference.name).exports_graphs
    candidate_probes = probes(candidate)
    result = localize(report.context, candidate, tol, probes(reference) if hooked else None,
                      candidate_probes)
    if not hooked:
        result.notes.append("module localisation hooks the torch model: use --reference torch")
    if candidate_probes is None:
        result.notes.append(f"a {candidate.name} candidate has no probed graph; the verdict "
                            "still holds")
    return result
