#!/usr/bin/env bash
# One-shot GPU check (target: GPU_CHECK_BUDGET_S, default 420 s, on an H100/H200; one device
# command of at most 600 s). From the repository root:
#
#   bash scripts/gpu_check.sh            # PYTHON=... to use another interpreter
#
# Parts in order, each logged to its own file and recorded in summary.md; a part that fails (or
# has no GPU to run on) is reported and the script goes on with the next. Each part runs under a
# timeout of at most what is left of the budget; the last ones start only if enough is left.
#   env          nvidia-smi, torch/triton/onnxruntime versions
#   launcher     libsoftmask_kernels.so built for sm_80 and sm_90 (this GPU's arch, plus the one
#                the fake-device ctests simulate) with cmake + nvcc, and its ctests
#   tests        every `gpu`-marked pytest test (soft and hard JIT kernel and custom op, the AOT
#                launcher in both modes through ctypes, the CUDA driver layer), with that launcher
#   mask2former  benchmarks/op_gpu.py --mask2former: the hard mode at Mask2Former's shapes,
#                checked, then timed against SDPA with a bool mask
#   sweep        benchmarks/sweep_gpu.py: the JIT kernel over split counts and tiles at the goal
#                shape and two neighbours (its own budget: at most 90 s, less if less is left)
#   op           benchmarks/op_gpu.py --quick: soft-mode correctness, then timing of 3 shapes
#   then, only with time left (the previous run reported them): torch_parity (torch on the GPU
#   vs the CPU, benchmarks/parity_gpu.py), model (end-to-end FPS, benchmarks/model_gpu.py), and
#   the parts needing onnxruntime-gpu or TensorRT, which report NOT RUN at once without them.
# Everything lands in benchmarks/results/<gpu>-<UTC date>/. Exit status: 0 if every part passed.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# The lent GPU machines have torch with CUDA in /opt/torch/.venv (the previous run's interpreter).
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=/opt/torch/.venv/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
BUDGET=${GPU_CHECK_BUDGET_S:-420}

GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
HAVE_GPU=0
if [ -n "$GPU" ] && "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  HAVE_GPU=1
fi
NAME=$(echo "${GPU:-no-gpu-$(hostname)}" | tr -cs 'A-Za-z0-9' '-' | sed 's/^-*//; s/-*$//')
OUT=${GPU_CHECK_OUT:-$REPO/benchmarks/results/$NAME-$(date -u +%Y%m%d)}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=0
{
  echo "# GPU check: ${GPU:-no GPU visible}"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) · commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)') · python $PY"
  echo
  echo "| part | status | seconds | log |"
  echo "| --- | --- | --- | --- |"
} > "$SUMMARY"

# part NAME MAX_SECONDS FUNCTION [NEED_SECONDS]: run FUNCTION (below) in a child bash under a
# timeout (at most what is left of the budget), log to $OUT/NAME.log, record the outcome; never
# stops the script. Not started when less than NEED_SECONDS (default 10) of the budget is left.
# PART_LIMIT tells FUNCTION its own limit (a part with an inner budget leaves itself a margin).
part() {
  local name=$1 max=$2 fn=$3 need=${4:-10}
  local left=$((BUDGET - SECONDS))
  local limit=$((max < left ? max : left))
  local status start=$SECONDS
  if [ "$left" -lt "$need" ] || [ "$limit" -lt 10 ]; then
    status="not run: time budget (${BUDGET}s) spent, ${left}s left, ${need}s needed"
  else
    echo "== $name (limit ${limit}s)"
    PART_LIMIT=$limit timeout --kill-after=10 "$limit" bash -c "$fn" > "$OUT/$name.log" 2>&1
    local rc=$?
    case $rc in
      0) status=passed ;;
      77) status="NOT RUN: $(tail -n 1 "$OUT/$name.log")" ;;
      124 | 137) status="FAILED: timed out after ${limit}s" ;;
      *) status="FAILED (exit $rc)" ;;
    esac
  fi
  [ "$status" = passed ] || FAILED=1
  echo "   $status"
  echo "| $name | $status | $((SECONDS - start)) | $name.log |" >> "$SUMMARY"
}

# Exit status 77 marks a part that had nothing to run on (reported as NOT RUN with the last line
# of its log, still a failure).
no_gpu() {
  echo "no GPU visible (nvidia-smi: '${GPU:-none}', torch.cuda.is_available() false): $1"
  return 77
}

env_info() {
  nvidia-smi || echo "nvidia-smi unavailable"
  "$PY" - <<'EOF'
import importlib
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs", p.total_memory >> 20, "MiB")
for name in ("triton", "onnxruntime"):
    try:
        mod = importlib.import_module(name)
        extra = mod.get_available_providers() if name == "onnxruntime" else ""
        print(name, mod.__version__, extra)
    except ImportError as exc:
        print(name, "missing:", exc)
EOF
}

build_launcher() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "the local arch is unknown, nothing to build for"; return; }
  local arch
  arch=$("$PY" -c 'import torch; m, n = torch.cuda.get_device_capability(); print(f"{m}{n}")') || return 1
  # The plugin too where TensorRT is installed, so the tensorrt-marked tests find it.
  local plugin=OFF
  "$PY" -c 'import tensorrt' 2>/dev/null && plugin=ON
  echo "TensorRT plugin build: $plugin"
  # This GPU's arch and sm_80: the fake-device ctests simulate Ampere and Ada GPUs, which run the
  # sm_80 cubins (built for sm_90 alone, one of them failed in the previous run).
  local archs="80;$arch"
  [ "$arch" = 80 ] && archs=80
  echo "this GPU: sm_$arch; building cubins for: $archs"
  cmake -S . -B build/gpu-check -DSOFTMASK_BUILD_PLUGIN=$plugin -DBUILD_TESTING=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$archs" -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$PY" &&
    cmake --build build/gpu-check -j "$(nproc)" &&
    ctest --test-dir build/gpu-check --output-on-failure
}

LAUNCHER=$REPO/build/gpu-check/lib/libsoftmask_kernels.so

gpu_tests() {
  local lib_env=()
  [ -f "$LAUNCHER" ] && lib_env=(env "SOFTMASK_KERNELS_LIB=$LAUNCHER")
  "${lib_env[@]}" "$PY" -m pytest tests -m gpu -q -rs -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml"
  local rc=$?
  [ "$HAVE_GPU" = 1 ] || { no_gpu "every gpu-marked test skipped (reasons above)"; return; }
  return $rc
}

op_benchmark() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "nothing to time"; return; }
  local launcher_arg=()
  [ -f "$LAUNCHER" ] && launcher_arg=(--launcher "$LAUNCHER")
  (cd benchmarks && "$PY" op_gpu.py "${launcher_arg[@]}" --quick --out "$OUT")
}

mask2former_benchmark() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "nothing to time"; return; }
  local launcher_arg=()
  [ -f "$LAUNCHER" ] && launcher_arg=(--launcher "$LAUNCHER")
  (cd benchmarks && "$PY" op_gpu.py "${launcher_arg[@]}" --mask2former --out "$OUT")
}

config_sweep() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "nothing to sweep"; return; }
  # At most 90 s of configurations, and 40 s less than this part's limit (setup, copy bandwidth,
  # writing the report) so the report is written before the timeout.
  local budget=$((PART_LIMIT - 40))
  [ "$budget" -gt 90 ] && budget=90
  [ "$budget" -ge 15 ] || { echo "only ${PART_LIMIT}s left: too little for the sweep"; return 1; }
  (cd benchmarks && "$PY" sweep_gpu.py --budget-s "$budget" --out "$OUT")
}

ort_parity() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "no CUDA execution provider to compare"; return; }
  "$PY" -c 'import sys, onnxruntime as o; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' ||
    { echo "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)"; return 77; }
  local data=$WORK/davis video ann
  "$PY" -m softmask.cli data synth --out "$data" --videos 1 --seed 7 --height 480 --width 854 \
    --frames 12 || return 1
  video=$data/JPEGImages/480p/synth7
  ann=$WORK/first-frame-annotation
  mkdir -p "$ann" && cp "$data/Annotations/480p/synth7/00000.png" "$ann/" || return 1
  "$PY" -m softmask.cli parity "$video" --annotations "$ann" --reference torch \
    --candidate onnxruntime --providers CUDAExecutionProvider \
    --ground-truth "$data/Annotations/480p/synth7" --report "$OUT/parity_ort_cuda.json"
}

torch_parity() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "no GPU to compare with the CPU"; return; }
  "$PY" benchmarks/parity_gpu.py --out "$OUT" --videos 2 --frames 12
}

model_fps() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "nothing to run the model on"; return; }
  (cd benchmarks && "$PY" model_gpu.py --models tiny,hodor --dtypes fp32,fp16 --out "$OUT")
}

export REPO PY OUT WORK GPU HAVE_GPU LAUNCHER
export -f no_gpu env_info build_launcher gpu_tests op_benchmark mask2former_benchmark config_sweep \
  ort_parity torch_parity model_fps
# Expected on an H200 (the previous run's times where known): env 5 s, launcher 30-60 s, tests
# 110-150 s, mask2former 40-70 s, sweep 100-130 s, op 60-100 s; then the optional parts.
part env 30 env_info
part launcher 150 build_launcher
part tests 200 gpu_tests
part mask2former 120 mask2former_benchmark
part sweep 135 config_sweep
part op 150 op_benchmark 60
# Reported by the previous run and long: only with the time they took then (71 s, 36 s) left.
part torch_parity 120 torch_parity 90
part model 150 model_fps 60
part parity 90 ort_parity

# --- The TensorRT path (issue 19): ONNX Runtime's TensorRT provider with the plugin, a Triton
# repository with TensorRT plans built here, and the three attention lowerings timed on TensorRT.
# Each needs a GPU, TensorRT (and cuda-python) and the self-registering plugin library; what is
# missing is reported as NOT RUN (exit 77).
TRT_PLUGIN_DIR=${SOFTMASK_PLUGIN_DIR:-$REPO/build/gpu-check/lib}

trt_ready() {
  [ "$HAVE_GPU" = 1 ] || { no_gpu "$1"; return; }
  "$PY" -c 'import tensorrt, cuda.bindings.driver' 2>/dev/null ||
    { echo "NOT RUN: tensorrt or cuda-bindings is not importable"; return 77; }
  [ -f "$TRT_PLUGIN_DIR/libsoftmask_trt_plugin_autoregister.so" ] ||
    { echo "NOT RUN: no plugin library in $TRT_PLUGIN_DIR (build with -DSOFTMASK_BUILD_PLUGIN=ON)"; return 77; }
  export SOFTMASK_PLUGIN_LIB=$TRT_PLUGIN_DIR/libsoftmask_trt_plugin.so
  export SOFTMASK_PLUGIN_AUTOREGISTER_LIB=$TRT_PLUGIN_DIR/libsoftmask_trt_plugin_autoregister.so
}

trt_synth_video() {
  local data=$WORK/trt-davis
  [ -d "$data" ] || "$PY" -m softmask.cli data synth --out "$data" --videos 1 --seed 7 \
    --height 480 --width 854 --frames 12 >&2 || return 1
  mkdir -p "$WORK/trt-ann" && cp "$data/Annotations/480p/synth7/00000.png" "$WORK/trt-ann/" || return 1
  echo "$data"
}

ort_tensorrt_provider() {
  trt_ready "no TensorRT provider to run" || return
  "$PY" -c 'import onnxruntime as o, sys; sys.exit("TensorrtExecutionProvider" not in o.get_available_providers())' ||
    { echo "NOT RUN: this onnxruntime has no TensorrtExecutionProvider"; return 77; }
  local data
  data=$(trt_synth_video) || return 1
  "$PY" -m softmask.cli parity "$data/JPEGImages/480p/synth7" --annotations "$WORK/trt-ann" \
    --reference torch --candidate onnxruntime --providers tensorrt \
    --ground-truth "$data/Annotations/480p/synth7" --report "$OUT/parity_ort_tensorrt.json"
}

serve_tensorrt_plans() {
  trt_ready "no GPU to build plans on" || return
  local export=$WORK/trt-serve-export repo=$WORK/trt-serve-repo
  "$PY" -m softmask.cli export --height 480 --width 854 --objects 3 --out "$export" || return 1
  "$PY" -m softmask.cli serve repo --export "$export" --out "$repo" --graphs tensorrt \
    --plugin "$SOFTMASK_PLUGIN_AUTOREGISTER_LIB" || return 1
  ls -l "$repo"/softmask_*/1/model.plan
}

trt_lowerings() {
  trt_ready "nothing to time" || return
  "$PY" benchmarks/trt_lowerings.py --out "$OUT" --repeats 20
}

export TRT_PLUGIN_DIR
export -f trt_ready trt_synth_video ort_tensorrt_provider serve_tensorrt_plans trt_lowerings
part ort_trt 150 ort_tensorrt_provider
part serve_trt 150 serve_tensorrt_plans
part trt_lowerings 240 trt_lowerings
{
  echo
  echo "Total: ${SECONDS}s (budget ${BUDGET}s). Results and logs: $OUT"
  [ "$HAVE_GPU" = 1 ] || echo "No GPU was visible: every GPU part reported that and nothing was measured."
} >> "$SUMMARY"
cat "$SUMMARY"
exit $FAILED
