"""Parity over time of the PyTorch backend on a CUDA GPU (the fused kernel behind the custom op)
against the same model on the CPU (reference math), on synthetic videos with ground truth.

The bundled tiny model (trained) segments held-out synthetic videos at 480x854; for each GPU
precision the report gives the worst label agreement over the frames, the largest score
difference, whether every quantity (labels, scores, recurrent state) stayed within the
precision's default tolerances (``Tolerances.for_precision``), and J&F of both sides against
the ground truth. Run from the repository root on a machine where torch sees a GPU:

    python benchmarks/parity_gpu.py --out benchmarks/results/<dir>
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from softmask.data.synthetic import write_davis_dataset
from softmask.eval.divergence import Tolerances
from softmask.eval.parity import compare_backends, read_video
from softmask.export.frame_graphs import StreamSpec
from softmask.model import load_checkpoint
from softmask.model.checkpoint import bundled_checkpoint_path
from softmask.runtime import TorchBackend


def _video(root: Path, seed: int, height: int, width: int, frames: int):
    write_davis_dataset(root, videos=1, seed=seed, height=height, width=width, frames=frames)
    name = f"synth{seed}"
    video = root / "JPEGImages" / "480p" / name
    truth = root / "Annotations" / "480p" / name
    first = min(truth.glob("*.png"))
    return read_video(video, [first], truth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--device", default="cuda", help="the candidate's device (cpu: a dry run)")
    parser.add_argument("--no-tf32", action="store_true",
                        help="fp32 convolutions and matrix products in full fp32 (torch's default "
                             "lets cuDNN use TF32 for convolutions)")
    args = parser.parse_args(argv)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch", file=sys.stderr)
        return 77
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = bundled_checkpoint_path("tiny")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(900000, 900000 + args.videos):
            frames, annotations, truth = _video(Path(work) / str(seed), seed, args.height,
                                                args.width, args.frames)
            objects = max(int(a.max()) for a in annotations.values())
            spec = StreamSpec(args.height, args.width, objects, 7)
            reference = TorchBackend(load_checkpoint(checkpoint), spec, with_scores=True)
            for dtype in (torch.float32, torch.float16):
                model = load_checkpoint(checkpoint).to(args.device, dtype)
                candidate = TorchBackend(model, spec, with_scores=True)
                precision = "fp16" if dtype == torch.float16 else "fp32"
                report = compare_backends(reference, candidate, frames, annotations, truth,
                                          tolerances=Tolerances.for_precision(precision))
                rows.append({
                    "video": f"synth{seed}", "gpu_dtype": str(dtype).removeprefix("torch."),
                    "frames": len(frames), "min_label_agreement": report.min_agreement,
                    "max_abs_score_diff": report.max_abs_score_diff,
                    "jf_cpu_fp32": report.jf_reference, "jf_gpu": report.jf_candidate,
                    "first_divergence": None if report.first_divergence is None
                    else str(report.first_divergence),
                    "passed": report.passed, "failures": report.failures[:5],
                })
                print(json.dumps(rows[-1]), flush=True)
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
    tf32 = {"cudnn": torch.backends.cudnn.allow_tf32,
            "matmul": torch.backends.cuda.matmul.allow_tf32}
    result = {"device": device, "tf32": tf32, "torch": torch.__version__,
              "checkpoint": "bundled tiny", "size": [args.height, args.width], "rows": rows}
    name = "parity_torch_gpu" + ("_no_tf32" if args.no_tf32 else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [("| video | GPU dtype | frames | min label agreement | max score diff | J&F CPU fp32 "
              "| J&F GPU | passed |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['video']} | {r['gpu_dtype']} | {r['frames']} | "
                     f"{r['min_label_agreement']:.5f} | {r['max_abs_score_diff']:.3g} | "
                     f"{r['jf_cpu_fp32']:.4f} | {r['jf_gpu']:.4f} | {r['passed']} |")
    lines.insert(0, f"TF32 allowed: {tf32}\n")
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
