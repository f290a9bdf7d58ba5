#!/usr/bin/env bash
# Every test that runs without a GPU: native build (kernel launcher + TensorRT plugin against
# TensorRT's public headers) with its C++ tests, twice: with the machine's CUDA toolkit and
# TensorRT 10.14's headers, then with JetPack 6's versions (CUDA 12.6's runtime, TensorRT 10.3's
# headers); then the Python suite. GPU / TensorRT tests skip with a reason when those are absent.
# Tests marked slow (full-size HODOR, the precision search, ...) run with --all or
# SOFTMASK_TEST_ALL=1 (CI runs them); every other argument goes to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
pytest_args=()
for arg in "$@"; do
  if [ "$arg" = --all ]; then SOFTMASK_TEST_ALL=1; else pytest_args+=("$arg"); fi
done
select=(-m "not slow")
[ "${SOFTMASK_TEST_ALL:-0}" = 1 ] && select=()
bash scripts/setup_env.sh dev
# The serve tests run the embedded Triton server from its own environment (numpy<2).
bash scripts/setup_env.sh serve
# The deployment install (no PyTorch, not editable) that tests/test_deploy_install.py runs.
bash scripts/setup_env.sh deploy
bash scripts/fetch_tensorrt_headers.sh
cmake -S . -B build -DSOFTMASK_TRT_HEADERS_ONLY=ON -DPython3_EXECUTABLE="$PWD/.venv/bin/python" \
  -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure
# JetPack 6.1/6.2 (Jetson Orin): host code compiled and linked (--no-undefined) against CUDA 12.6's
# runtime headers and libcudart.so.12 and TensorRT 10.3's headers (third_party/tensorrt-10.3); the
# .cu file with the machine's nvcc. Kernels for Orin (87) and for the fake GPUs of the C++ tests.
bash scripts/fetch_cuda_runtime.sh
cmake -S . -B build-jetpack6 -DSOFTMASK_CUDA_RUNTIME_ROOT="$PWD/third_party/cuda-12.6" -DSOFTMASK_CUDART=shared \
  -DSOFTMASK_TRT_HEADERS_ONLY=ON -DSOFTMASK_TRT_HEADERS_DIR="$PWD/third_party/tensorrt-10.3" -DSOFTMASK_REQUIRE_TENSORRT_VERSION=10.3 \
  -DCMAKE_CUDA_ARCHITECTURES="80;87;90" -DPython3_EXECUTABLE="$PWD/.venv/bin/python" -DCMAKE_BUILD_TYPE=Release
cmake --build build-jetpack6 -j "$(nproc)"
ctest --test-dir build-jetpack6 --output-on-failure
# Lint first: seconds, and a failure names the file and line (the project's config: pyproject.toml).
.venv/bin/ruff check .
# A -m of the caller comes later and wins over "not slow".
.venv/bin/python -m pytest ${select[@]+"${select[@]}"} ${pytest_args[@]+"${pytest_args[@]}"}
