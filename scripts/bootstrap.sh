#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a virtualenv in .venv with torch (CPU build from local disk on
# these machines) and promptbank installed editable with its dev extras. Prints the venv's python path.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PROMPTBANK_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" >&2
fi
STAMP="$VENV/.promptbank-installed"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" >&2
  "$VENV/bin/python" -m pip install -q -e ".[dev]" >&2
  touch "$STAMP"
fi
echo "$VENV/bin/python"
