#!/usr/bin/env bash
# Regenerates promptbank/v1/*_pb2.py, *_pb2_grpc.py and mypy-protobuf .pyi stubs from protos/.
# The generated files are committed; tests/test_protos.py fails when they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-.}"
PY="${PYTHON:-python}"
mkdir -p "$OUT/promptbank/v1"
"$PY" -m grpc_tools.protoc -Iprotos \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --mypy_out="$OUT" --mypy_grpc_out="$OUT" \
  protos/promptbank/v1/*.proto
touch "$OUT/promptbank/v1/__init__.py"
