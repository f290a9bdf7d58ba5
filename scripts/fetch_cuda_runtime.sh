#!/usr/bin/env bash
# Fetch JetPack 6's CUDA runtime (12.6) for an x86 compile-and-link check of the native code.
#
# JetPack 6.1/6.2 ship CUDA 12.6. NVIDIA's PyPI wheels of that release hold what the host code
# needs: nvidia-cuda-runtime-cu12==12.6.77 (cuda_runtime_api.h, cuda.h, cudaTypedefs.h, ...,
# libcudart.so.12) and nvidia-cuda-nvcc-cu12==12.6.85 (the crt/ headers cuda_runtime_api.h
# includes; ptxas, but no nvcc driver). Only those files are extracted, into DEST/include and
# DEST/lib; nothing is installed. The wheels' sha256 are pinned (x86_64 Linux builds).
#
# Usage: bash scripts/fetch_cuda_runtime.sh [DEST]   (default DEST: third_party/cuda-12.6)
# Env:   PYTHON  interpreter with pip (default: .venv/bin/python if present, else python3)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/third_party/cuda-12.6}"
runtime_wheel="nvidia_cuda_runtime_cu12-12.6.77-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
runtime_sha256="ba3b56a4f896141e25e19ab287cd71e52a6a0f4b29d0d31609f60e3b4d5219b7"
nvcc_wheel="nvidia_cuda_nvcc_cu12-12.6.85-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl"
nvcc_sha256="d75d9d74599f4d7c0865df19ed21b739e6cb77a6497a3f73d6f61e8038a765e4"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "${repo_root}/.venv/bin/python" ]]; then
    PYTHON="${repo_root}/.venv/bin/python"
  else
    PYTHON="python3"
  fi
fi

if [[ -f "${dest}/include/cuda_runtime_api.h" && -f "${dest}/include/crt/host_defines.h" \
      && -f "${dest}/lib/libcudart.so.12" ]]; then
  echo "CUDA 12.6 runtime already present in ${dest}"
  exit 0
fi

download_dir="$(mktemp -d)"
trap 'rm -rf "${download_dir}"' EXIT

"${PYTHON}" -m pip download --quiet --no-deps --only-binary=:all: \
  "nvidia-cuda-runtime-cu12==12.6.77" "nvidia-cuda-nvcc-cu12==12.6.85" -d "${download_dir}"
for pair in "${runtime_wheel}:${runtime_sha256}" "${nvcc_wheel}:${nvcc_sha256}"; do
  wheel="${download_dir}/${pair%%:*}"
  if [[ ! -f "${wheel}" ]]; then
    echo "error: pip did not produce ${pair%%:*} in ${download_dir} (these are the x86_64 Linux wheels)" >&2
    exit 1
  fi
  actual="$(sha256sum "${wheel}" | cut -d' ' -f1)"
  if [[ "${actual}" != "${pair##*:}" ]]; then
    echo "error: ${pair%%:*} has sha256 ${actual}, expected ${pair##*:}" >&2
    exit 1
  fi
done

# Extract with Python's zipfile so the script does not depend on `unzip` being installed.
"${PYTHON}" - "${download_dir}/${runtime_wheel}" "${download_dir}/${nvcc_wheel}" "${dest}" <<'PY'
import pathlib
import sys
import zipfile

runtime, nvcc, dest = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
wanted = {
    runtime: ("nvidia/cuda_runtime/", ("include/", "lib/libcudart.so.12")),
    nvcc: ("nvidia/cuda_nvcc/", ("include/crt/",)),
}
for wheel, (root, parts) in wanted.items():
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist()
                 if n.startswith(root) and n[len(root):].startswith(parts) and not n.endswith("__init__.py")]
        if not names:
            sys.exit(f"error: nothing under {root}{parts} in {wheel}")
        for name in names:
            out = dest / name[len(root):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(name))
PY

echo "CUDA 12.6 runtime written to ${dest}"
grep -E '^#define CUDART_VERSION' "${dest}/include/cuda_runtime_api.h"
