"""Parity for image models: an ``export --hf-model`` folder on ONNX Runtime against the
transformers model it came from, in PyTorch, on a folder of images.

Per image: each output's largest difference (absolute, and relative to the reference output's
largest magnitude), and the task's answer through transformers' own post-processing: the semantic
map (pixel agreement) and the panoptic segmentation (segment ids, labels and scores) must be equal.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from softmask.data.io import list_frames, read_frame
from softmask.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4


@dataclass
class ImageParity:
    """One image: per-output max |difference| (``max_abs``) and that over the reference's max
    |value| (``relative``); semantic-map pixel agreement; whether the panoptic results match."""

    image: str
    max_abs: dict[str, float]
    relative: dict[str, float]
    semantic_agreement: float
    panoptic_equal: bool


@dataclass
class ImageParityReport:
    """Every image's row, the tolerance and what failed (empty: passed)."""

    export: str
    hf_model: str
    tolerance: float
    images: list[ImageParity] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def summary(self) -> str:
        """Lines for the terminal: the worst figures and the verdict."""
        worst = {name: max(row.relative[name] for row in self.images)
                 for name in self.images[0].relative}
        lines = [f"images: {len(self.images)}; largest relative difference "
                 + ", ".join(f"{name} {value:.3g}" for name, value in worst.items()),
                 (f"lowest semantic-map agreement "
                  f"{min(row.semantic_agreement for row in self.images):.6f}; panoptic results "
                  f"equal on {sum(row.panoptic_equal for row in self.images)}/{len(self.images)}")]
        lines += [f"FAIL {failure}" for failure in self.failures[:10]]
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"parity onnxruntime vs transformers: {verdict} (relative difference <= "
                     f"{self.tolerance:g}, post-processed results equal)")
        return "\n".join(lines)


def _panoptic_equal(first: dict, second: dict) -> bool:
    if not np.array_equal(first["segmentation"].numpy(), second["segmentation"].numpy()):
        return False
    strip = [[(s["id"], s["label_id"]) for s in r["segments_info"]] for r in (first, second)]
    scores = [[s["score"] for s in r["segments_info"]] for r in (first, second)]
    return strip[0] == strip[1] and np.allclose(scores[0], scores[1], rtol=0, atol=1e-4)


def image_parity(
    images: str | Path, hf_model: str | Path, export: str | Path,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ImageParityReport:
    """Compare ``export/model.onnx`` on ONNX Runtime's CPU provider with the transformers model
    in ``hf_model`` (PyTorch, unconverted) on every image of the folder ``images``.

    Images are resized to the export's input size by the model's image processor
    (``preprocessor_config.json`` when the folder has one, else transformers' defaults).

    Raises:
        InputError: a folder or file is missing, the export is not an ``--hf-model`` export, or
            the tolerance is not positive.
    """
    import onnxruntime as ort
    import torch
    import transformers

    from softmask.convert.mask2former import MANIFEST_NAME, OUTPUT_NAMES, load_hf_model

    if not tolerance > 0:
        raise InputError(f"--tolerance {tolerance}: must be a positive number")
    export = Path(export)
    manifest_path = export / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{manifest_path}: cannot read the export's manifest ({error})") from error
    if manifest.get("format") != "softmask-hf-export":
        raise InputError(f"{export}: not an export made with softmask export --hf-model")
    _, _, height, width = manifest["inputs"]["pixel_values"]
    paths = list_frames(images)
    model = load_hf_model(hf_model)
    if (Path(hf_model) / "preprocessor_config.json").is_file():
        processor = transformers.AutoImageProcessor.from_pretrained(hf_model)
    else:
        processor = transformers.Mask2FormerImageProcessor()
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    output_type = transformers.models.mask2former.modeling_mask2former \
        .Mask2FormerForUniversalSegmentationOutput
    report = ImageParityReport(str(export), str(hf_model), tolerance)
    for path in paths:
        image = read_frame(path)
        size = [image.shape[:2]]
        pixels = processor(images=image, size={"height": height, "width": width},
                           return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            want = model(pixel_values=pixels)
        got = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES),
                                                 {"pixel_values": pixels.numpy()})))
        max_abs, relative = {}, {}
        for name in OUTPUT_NAMES:
            reference = getattr(want, name).numpy().astype(np.float64)
            difference = float(np.abs(got[name] - reference).max())
            max_abs[name] = difference
            relative[name] = difference / max(float(np.abs(reference).max()), 1e-12)
            if relative[name] > tolerance:
                report.failures.append(f"{path.name}: {name} relative difference "
                                       f"{relative[name]:.3g} > {tolerance:g}")
        ours = output_type(**{name: torch.from_numpy(got[name]) for name in OUTPUT_NAMES})
        semantic = [processor.post_process_semantic_segmentation(o, target_sizes=size)[0].numpy()
                    for o in (want, ours)]
        agreement = float((semantic[0] == semantic[1]).mean())
        if agreement < 1.0:
            report.failures.append(f"{path.name}: semantic maps differ on "
                                   f"{(1 - agreement) * 100:.4f} % of pixels")
        panoptic = [processor.post_process_panoptic_segmentation(o, target_sizes=size)[0]
                    for o in (want, ours)]
        panoptic_equal = _panoptic_equal(*panoptic)
        if not panoptic_equal:
            report.failures.append(f"{path.name}: panoptic segmentations differ")
        report.images.append(ImageParity(path.name, max_abs, relative, agreement, panoptic_equal))
        logger.info("%s: relative %s, semantic agreement %.6f", path.name, relative, agreement)
    return report
