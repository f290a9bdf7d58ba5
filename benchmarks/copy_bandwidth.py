"""Device-to-device copy bandwidth at several buffer sizes (GB/s counting bytes read + written):
the denominator behind op_gpu.py's "% of copy", measured with CUDA events around back-to-back
copies (median of 20 after 5 warm-ups), next to the CUDA-graph method op_gpu.py uses.

    python benchmarks/copy_bandwidth.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

SIZES_MIB = (256, 1024, 4096)


def events_gbs(nbytes: int, repeats: int = 20) -> float:
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(5):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return 2 * nbytes / statistics.median(times) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to torch", file=sys.stderr)
        return 77
    rows = [{"buffer_mib": mib, "gb_per_s": round(events_gbs(mib << 20), 1)} for mib in SIZES_MIB]
    result = {"device": torch.cuda.get_device_name(0), "method": "CUDA events, median of 20",
              "rows": rows}
    print(json.dumps(result))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "copy_bandwidth.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
