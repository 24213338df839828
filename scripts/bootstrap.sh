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
  # The rest through uv when it installs (minutes faster than pip on a fresh machine); pip if it does not.
  # torch is already there, so neither resolver looks for another build of it. Bytecode is compiled now, as
  # pip does: where PYTHONDONTWRITEBYTECODE is set, every process would otherwise compile ray and
  # transformers again on import (seconds per coordinator, replica and CLI call).
  if ! { "$VENV/bin/python" -m pip install -q uv >&2 \
         && "$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" --compile-bytecode -q -e ".[dev]" >&2; }; then
    echo "bootstrap: uv was unavailable or failed; installing with pip" >&2
    "$VENV/bin/python" -m pip install -q -e ".[dev]" >&2
  fi
  touch "$STAMP"
fi
# PostgreSQL server binaries: the tests start their own throwaway server (tests/pg_server.py).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing PostgreSQL server binaries for the tests" >&2
    if ! log="$( (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          postgresql-15 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql) 2>&1)"; then
      printf '%s\n' "$log" | tail -n 20 >&2
      echo "bootstrap: could not install PostgreSQL; the PostgreSQL tests will fail until it is installed" >&2
    fi
  else
    echo "bootstrap: PostgreSQL server binaries not found; as root run: apt-get install -y postgresql-15" >&2
  fi
fi
# Node.js and npm: the TypeScript SDK (clients/typescript) builds and tests with them.
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bootstrap: installing Node.js and npm for the TypeScript SDK" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm) >&2 \
    || echo "bootstrap: could not install Node.js; the TypeScript SDK's tests will fail until it is installed" >&2
fi
# Headless Chromium and its driver: tests/test_console.py drives the web console in a real browser.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Chromium and chromedriver for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver) >&2 \
      || echo "bootstrap: could not install Chromium; tests/test_console.py will fail until it is installed" >&2
  else
    echo "bootstrap: Chromium not found; as root run: apt-get install -y chromium chromium-driver" >&2
  fi
fi
echo "$VENV/bin/python"
