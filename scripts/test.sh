#!/usr/bin/env bash
# Every test that runs without a GPU: native build (kernel launcher + TensorRT plugin against
# TensorRT's public headers) with its C++ tests, then the Python suite. GPU / TensorRT tests skip
# with a reason when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev
# The serve tests run the embedded Triton server from its own environment (numpy<2).
bash scripts/setup_env.sh serve
bash scripts/fetch_tensorrt_headers.sh
cmake -S . -B build -DSOFTMASK_TRT_HEADERS_ONLY=ON -DPython3_EXECUTABLE="$PWD/.venv/bin/python" \
  -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure
.venv/bin/python -m pytest "$@"
