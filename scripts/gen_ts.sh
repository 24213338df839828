#!/usr/bin/env bash
# Regenerates the TypeScript SDK's message and service code, clients/typescript/src/gen/promptbank/v1/*_pb.ts,
# from protos/ with protoc-gen-es (Connect-ES: one file per proto holds its messages, enums and services), and
# src/gen/google/api/*_pb.ts from the vendored google.api HTTP annotations the promptbank protos import (REST routes).
# The sibling of scripts/gen_protos.sh (the Python stubs); both drive the same protoc (grpcio-tools), so the two
# SDKs are generated from one API. Needs `npm ci` in clients/typescript first (the plugin is a dev dependency).
# The generated files are committed; clients/typescript/test/generated.test.ts fails when they are stale.
#   bash scripts/gen_ts.sh [OUT_DIR]     # default: clients/typescript/src/gen
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-clients/typescript/src/gen}"
PY="${PYTHON:-python}"
PLUGIN="clients/typescript/node_modules/.bin/protoc-gen-es"
if [ ! -x "$PLUGIN" ]; then
  echo "gen_ts: $PLUGIN is missing; run 'npm ci' in clients/typescript first" >&2
  exit 2
fi
mkdir -p "$OUT"
rm -f "$OUT"/promptbank/v1/*_pb.ts "$OUT"/google/api/*_pb.ts
"$PY" -m grpc_tools.protoc -Iprotos \
  --plugin=protoc-gen-es="$PLUGIN" \
  --es_out="$OUT" --es_opt=target=ts,import_extension=js \
  protos/promptbank/v1/*.proto protos/google/api/*.proto
