#!/usr/bin/env bash
# Creates a virtual environment (if needed) and installs softmask into it.
#   scripts/setup_env.sh          ./.venv, editable, with PyTorch (enough for the demo)
#   scripts/setup_env.sh dev      plus test/lint/kernel dependencies (pytest, hypothesis, triton)
#   scripts/setup_env.sh serve    ./.venv-serve instead: softmask + the serve extra (the embedded
#                                 Triton server of nvidia-pytriton, tritonclient). PyTriton's python
#                                 backend needs numpy<2, so it gets an environment of its own.
#   scripts/setup_env.sh deploy   ./.venv-deploy instead: `pip install .` (not editable) and no
#                                 PyTorch, as on an edge device; the tests run exports in it.
# torch is pinned to 2.13.0: on these machines pip takes its CPU build from local disk instead of
# downloading several GB of CUDA wheels. Re-running is cheap: it skips work already done (deploy
# reinstalls softmask, from pip's wheel cache for its dependencies, when its sources changed).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
venv=.venv
case "$extra" in
  serve) venv=.venv-serve ;;
  deploy) venv=.venv-deploy ;;
esac
python3 -m venv "$venv" 2>/dev/null || true
[ -x "$venv/bin/python" ] || { echo "error: could not create $venv with python3 -m venv" >&2; exit 1; }
stamp="$venv/.softmask-installed${extra:+-$extra}"
if [ "$extra" = deploy ]; then
  # A copy, not a link to the sources: the stamp covers every file that goes into it.
  want="$( (sha256sum pyproject.toml; find softmask -type f ! -name '*.pyc' | LC_ALL=C sort |
    xargs sha256sum) | sha256sum | cut -c1-16)"
else
  want="$(sha256sum pyproject.toml | cut -c1-16)"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  if [ "$extra" = deploy ]; then
    # setuptools stages the package in build/lib/softmask (beside cmake's libraries) and keeps
    # files there that the sources no longer have: clear its part so a removed module is not shipped.
    rm -rf build/lib/softmask build/bdist.*
    "$venv/bin/python" -m pip install --quiet .
    if "$venv/bin/python" -c "import torch" 2>/dev/null; then
      echo "error: torch is installed in $venv; the deployment install must not need it" >&2
      exit 1
    fi
  else
    "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
    "$venv/bin/python" -m pip install --quiet -e ".[torch${extra:+,$extra}]"
  fi
  echo "$want" > "$stamp"
fi
