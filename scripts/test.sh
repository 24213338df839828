#!/usr/bin/env bash
# THE test command: set up on a fresh machine if needed, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/bootstrap.sh)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
"$PY" -m ruff check --quiet .  # lint first: seconds, and it names the line
exec "$PY" -m pytest "$@"
