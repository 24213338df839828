#!/usr/bin/env bash
# THE test command: set up on a fresh machine if needed, then run the whole suite: lint, type check, the Python
# tests, and the TypeScript SDK's tests (clients/typescript, `npm ci` from its lockfile, then `node --test` against a
# real server).
# Arguments go to pytest and then select Python tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/bootstrap.sh)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
"$PY" -m ruff check --quiet .  # lint first: seconds, and it names the line
"$PY" -m mypy  # then types: the packages and flags of pyproject's [tool.mypy]; any error ends the run here
status=0
"$PY" -m pytest "$@" || status=$?
if [ "$#" -eq 0 ]; then
  if ! command -v npm >/dev/null; then
    echo "test: npm not found; the TypeScript SDK's tests need Node.js >= 20 and npm" >&2
    exit 1
  fi
  export PROMPTBANK_PYTHON="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # the venv's, for the test server
  (cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error && npm test) || status=$?
fi
exit "$status"
