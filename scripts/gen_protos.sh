#!/usr/bin/env bash
# Regenerates promptbank_api/v1/*_pb2.py, *_pb2_grpc.py and mypy-protobuf .pyi stubs from protos/.
# protos/promptbank/v1 is the API's source of truth (proto package promptbank.v1); its Python stubs live in
# their own package, promptbank_api, so that the server loads them without loading the client SDK. protoc names
# Python modules after the proto path, so the generated imports are rewritten to the package they live in.
# The generated files are committed; tests/test_protos.py fails when they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-.}"
PY="${PYTHON:-python}"
PATH="$(dirname "$(command -v "$PY")"):$PATH"  # protoc-gen-mypy sits beside the interpreter
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m grpc_tools.protoc -Iprotos \
  --python_out="$TMP" --grpc_python_out="$TMP" \
  --mypy_out="$TMP" --mypy_grpc_out="$TMP" \
  protos/promptbank/v1/*.proto
mkdir -p "$OUT/promptbank_api/v1"
for f in "$TMP"/promptbank/v1/*.py "$TMP"/promptbank/v1/*.pyi; do
  sed -e 's/^from promptbank\.v1 import /from promptbank_api.v1 import /' \
      -e 's/^import promptbank\.v1\./import promptbank_api.v1./' \
      -e 's/\bpromptbank\.v1\.\([a-z_]*_pb2\)\b/promptbank_api.v1.\1/g' \
      "$f" > "$OUT/promptbank_api/v1/$(basename "$f")"
done
touch "$OUT/promptbank_api/v1/__init__.py"
