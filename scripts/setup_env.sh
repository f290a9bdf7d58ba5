#!/usr/bin/env bash
# Creates ./.venv (if needed) and installs softmask into it, editable.
#   scripts/setup_env.sh          runtime dependencies (enough for the demo)
#   scripts/setup_env.sh dev      plus test/lint/kernel dependencies (pytest, hypothesis, triton)
#   scripts/setup_env.sh serve    ./.venv-serve instead: softmask + the serve extra (the embedded
#                                 Triton server of nvidia-pytriton, tritonclient). PyTriton's python
#                                 backend needs numpy<2, so it gets an environment of its own.
# torch is pinned to 2.13.0: on these machines pip takes its CPU build from local disk instead of
# downloading several GB of CUDA wheels. Re-running is cheap: it skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
venv=.venv
[ "$extra" = serve ] && venv=.venv-serve
python3 -m venv "$venv" 2>/dev/null || true
[ -x "$venv/bin/python" ] || { echo "error: could not create $venv with python3 -m venv" >&2; exit 1; }
stamp="$venv/.softmask-installed${extra:+-$extra}"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
  "$venv/bin/python" -m pip install --quiet -e ".${extra:+[$extra]}"
  echo "$want" > "$stamp"
fi
