#!/usr/bin/env bash
# The demo from a fresh clone: sets up ./.venv, then runs `softmask demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh >&2
exec .venv/bin/softmask demo "$@"
