#!/usr/bin/env bash
# Fetch TensorRT's public C++ headers (10.14.1, Apache-2.0) for a compile-only plugin build.
#
# No TensorRT runtime can be installed on CI, but the PyPI wheel kernel-lens==2.0.1 ships the
# headers under kernel_lens/include/tensorrt/. Only those headers are extracted; nothing else of
# the wheel is installed or used. The wheel's sha256 is pinned so a changed upload is noticed.
#
# Usage: bash scripts/fetch_tensorrt_headers.sh [DEST]   (default DEST: third_party/tensorrt-headers)
# Env:   PYTHON  interpreter with pip (default: .venv/bin/python if present, else python3)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/third_party/tensorrt-headers}"
wheel_name="kernel_lens-2.0.1-py3-none-any.whl"
wheel_sha256="07cc714e8b5e7f34b672f7c7fad93febe7c747be5837ba276b1527370134ffe0"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "${repo_root}/.venv/bin/python" ]]; then
    PYTHON="${repo_root}/.venv/bin/python"
  else
    PYTHON="python3"
  fi
fi

if [[ -f "${dest}/include/NvInferVersion.h" && -f "${dest}/include/NvInferRuntime.h" ]]; then
  echo "TensorRT headers already present in ${dest}/include"
  exit 0
fi

download_dir="$(mktemp -d)"
trap 'rm -rf "${download_dir}"' EXIT

"${PYTHON}" -m pip download --quiet --no-deps --only-binary=:all: "kernel-lens==2.0.1" -d "${download_dir}"
wheel="${download_dir}/${wheel_name}"
if [[ ! -f "${wheel}" ]]; then
  echo "error: pip did not produce ${wheel_name} in ${download_dir}" >&2
  exit 1
fi

actual_sha256="$(sha256sum "${wheel}" | cut -d' ' -f1)"
if [[ "${actual_sha256}" != "${wheel_sha256}" ]]; then
  echo "error: ${wheel_name} has sha256 ${actual_sha256}, expected ${wheel_sha256}" >&2
  exit 1
fi

# Extract with Python's zipfile so the script does not depend on `unzip` being installed.
"${PYTHON}" - "${wheel}" "${dest}/include" <<'PY'
import pathlib
import sys
import zipfile

wheel, out_dir = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "kernel_lens/include/tensorrt/"
out_dir.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as archive:
    headers = [n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".h")]
    if not headers:
        sys.exit(f"error: no {prefix}*.h in {wheel}")
    for name in headers:
        (out_dir / name[len(prefix):]).write_bytes(archive.read(name))
PY

echo "TensorRT headers written to ${dest}/include"
grep -E '^#define TRT_(MAJOR|MINOR|PATCH)_ENTERPRISE' "${dest}/include/NvInferVersion.h"
