#!/usr/bin/env bash
# The GPU path on a machine with CUDA: the tests marked gpu (tests/test_gpu.py) and the serving benches at the
# worker level, in process, on a 1B causal LM built from a config in bf16 (bench/device.py), with their record
# written to bench/results/device.json (the GPU named in it) and docs/benchmarks.md rendered again.
#
#   scripts/device_check.sh [--dry-run] [--wheels DIR]
#
# Made for machines that have Python with a CUDA torch (possibly another version than ours), transformers,
# peft, accelerate, safetensors, grpcio and protobuf, but neither Ray nor SQLAlchemy nor Alembic, and nothing to
# download from: the worker code runs without them, and pytest comes from --wheels DIR (default shared/wheels)
# when it is missing. About 5 minutes on one H100. $OUT, when set, receives a copy of the record and the log.
# --dry-run (any machine): checks the set-up (the imports without Ray and the bank, the 1B model's size from
# its config, the GPU tests' collection) and runs the bench as a CPU pipeline check (--quick); nothing measured.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DRY=0
WHEELS="shared/wheels"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --wheels) WHEELS="$2"; shift ;;
    *) echo "unknown argument: $1 (use --dry-run, --wheels DIR)" >&2; exit 2 ;;
  esac
  shift
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step() { echo; echo "=== $*"; }
t0=$(date +%s)

step "environment"
"$PY" - <<'PY'
import platform, torch, transformers
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"CUDA {'yes: ' + ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else 'no'}")
PY

step "worker modules import without ray, sqlalchemy, alembic"
"$PY" - <<'PY'
import importlib.abc, sys
BLOCKED = ("ray", "sqlalchemy", "alembic")
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here")
        return None
for name in BLOCKED:
    sys.modules[name] = None
sys.meta_path.insert(0, Absent())
import workers.actor, workers.engine, workers.train, workers.generate, workers.devices  # noqa: F401
print("ok: workers.actor, engine, train, generate, devices")
PY

step "1B model"
"$PY" - <<'PY'
import sys
sys.path.insert(0, "bench")
from _synthetic import LLAMA_1B, parameters
n = parameters(LLAMA_1B)
print(f"1B model: {n / 1e9:.2f}B parameters from its config, {2 * n / 2**30:.2f} GiB in bf16 (built on the GPU by bench/device.py)")
PY

if ! "$PY" -c "import pytest" 2>/dev/null; then
  if [ -d "$WHEELS" ]; then
    step "pytest from $WHEELS"
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" pytest
  else
    echo "pytest is not installed and $WHEELS holds no wheels: bring pytest's wheels (pytest, pluggy, iniconfig, packaging)" >&2
    exit 1
  fi
fi

RESULTS=bench/results
if [ "$DRY" = 1 ]; then
  RESULTS="$(mktemp -d)"
  step "pytest --noconftest -m gpu tests/test_gpu.py (collection only)"
  "$PY" -m pytest --noconftest -p no:cacheprovider -m gpu tests/test_gpu.py --collect-only -q -o addopts=""
  step "bench/device.py --quick (a CPU pipeline check)"
  "$PY" bench/device.py --quick --json "$RESULTS/device.json"
  echo; echo "dry run: nothing measured ($(( $(date +%s) - t0 )) s)"
  exit 0
fi

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with --dry-run')"
step "pytest --noconftest -m gpu tests/test_gpu.py"
set +e
"$PY" -m pytest --noconftest -p no:cacheprovider -m gpu tests/test_gpu.py -q -rs -o addopts=""
tests=$?
set -e
step "bench/device.py"
"$PY" bench/device.py --json "$RESULTS/device.json"
"$PY" bench/run_all.py --render-only || echo "docs/benchmarks.md not rendered (see above)"
if [ -n "${OUT:-}" ]; then cp "$RESULTS/device.json" docs/benchmarks.md "$OUT/"; fi
echo; echo "device check done in $(( $(date +%s) - t0 )) s; gpu tests exit $tests"
exit "$tests"
