#!/usr/bin/env bash
# THE main job: set up on a fresh machine if needed, then `promptbank demo` on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/bootstrap.sh)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
exec "$(dirname "$PY")/promptbank" demo "$@"
