"""Writes coordinator/rest/openapi.json: the REST API's OpenAPI 3.1 document, generated from the protos.

The routes come from the same `google.api.http` annotations, read the same way (coordinator/rest/routes.py), as
the server's; schemas follow protobuf's canonical JSON mapping (lowerCamelCase names, 64-bit integers as
strings, enums by name); descriptions are the protos' comments (protoc's source info). The document is committed
and served at /openapi.json; tests/test_rest.py fails when it is stale.
    python scripts/gen_openapi.py [OUT]      # default: coordinator/rest/openapi.json
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import descriptor_pb2  # noqa: E402
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor  # noqa: E402

from coordinator.api import API  # noqa: E402
from coordinator.auth import rule  # noqa: E402
from coordinator.rest.routes import Route, routes_of  # noqa: E402

F = FieldDescriptor
SCALARS: dict[int, dict[str, Any]] = {
    F.TYPE_DOUBLE: {"type": "number", "format": "double"}, F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"}, F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"}, F.TYPE_UINT32: {"type": "integer", "format": "int64"},
    F.TYPE_FIXED32: {"type": "integer", "format": "int64"}, F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"}, F.TYPE_BYTES: {"type": "string", "format": "byte"},
    **{t: {"type": "string", "format": "int64"} for t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64,
                                                           F.TYPE_UINT64, F.TYPE_FIXED64)},
}
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
}
STATUS = {"type": "object", "description": "google.rpc.Status: the gRPC status code and message of an error.",
          "properties": {"code": {"type": "integer", "format": "int32", "description": "google.rpc.Code"},
                         "message": {"type": "string"}, "details": {"type": "array", "items": {"type": "object"}}}}


def comments() -> dict[str, str]:
    """Full name -> leading comment of every message, field, enum, value, service and method of the protos."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iprotos", "--include_source_info",
                        f"--descriptor_set_out={out}", *sorted(str(p.relative_to(ROOT)) for p in
                                                              (ROOT / "protos" / "promptbank").rglob("*.proto"))],
                       check=True, cwd=ROOT)
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    found: dict[str, str] = {}
    for f in fds.file:
        file_comments(f, found)
    return found


def file_comments(f: descriptor_pb2.FileDescriptorProto, found: dict[str, str]) -> None:
    """One file's comments into `found`, by the source-info path of each element."""
    by_path = {tuple(loc.path): " ".join(loc.leading_comments.split()) for loc in f.source_code_info.location}

    def enum(e: Any, prefix: str, here: tuple[int, ...]) -> None:
        found[f"{prefix}.{e.name}"] = by_path.get(here, "")
        for k, v in enumerate(e.value):
            found[f"{prefix}.{e.name}.{v.name}"] = by_path.get((*here, 2, k), "")

    def walk(msgs: Any, prefix: str, path: tuple[int, ...], field_no: int) -> None:
        for i, m in enumerate(msgs):
            name, here = f"{prefix}.{m.name}", (*path, field_no, i)
            found[name] = by_path.get(here, "")
            for j, fld in enumerate(m.field):
                found[f"{name}.{fld.name}"] = by_path.get((*here, 2, j), "")
            for j, e in enumerate(m.enum_type):
                enum(e, name, (*here, 4, j))
            walk(m.nested_type, name, here, 3)

    walk(f.message_type, f.package, (), 4)
    for i, e in enumerate(f.enum_type):
        enum(e, f.package, (5, i))
    for i, s in enumerate(f.service):
        found[f"{f.package}.{s.name}"] = by_path.get((6, i), "")
        for j, m in enumerate(s.method):
            found[f"{f.package}.{s.name}.{m.name}"] = by_path.get((6, i, 2, j), "")


class Schemas:
    """components.schemas, filled as messages and enums are referenced."""

    def __init__(self, docs: dict[str, str]):
        self.docs, self.out = docs, {"google.rpc.Status": STATUS}

    def ref(self, name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def enum(self, e: EnumDescriptor) -> dict[str, str]:
        if e.full_name not in self.out:
            values = "; ".join(f"{v.name}: {self.docs.get(f'{e.full_name}.{v.name}', '')}" for v in e.values)
            self.out[e.full_name] = {"type": "string", "enum": [v.name for v in e.values],
                                     "description": f"{self.docs.get(e.full_name, '')} ({values})"}
        return self.ref(e.full_name)

    def message(self, m: Descriptor) -> dict[str, Any]:
        if m.full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[m.full_name])
        if m.full_name not in self.out:
            self.out[m.full_name] = {}  # placeholder: recursion stops here
            props = {f.json_name: {**self.field(f), "description": self.docs.get(f"{m.full_name}.{f.name}", "")}
                     for f in m.fields}
            self.out[m.full_name] = {"type": "object", "description": self.docs.get(m.full_name, ""),
                                     "properties": props}
        return self.ref(m.full_name)

    def value(self, f: FieldDescriptor) -> dict[str, Any]:
        if f.enum_type is not None:
            return self.enum(f.enum_type)
        if f.message_type is not None:
            return self.message(f.message_type)
        return dict(SCALARS[f.type])

    def field(self, f: FieldDescriptor) -> dict[str, Any]:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self.value(f.message_type.fields_by_name["value"])}
        return {"type": "array", "items": self.value(f)} if f.is_repeated else self.value(f)


def singular(collection: str) -> str:
    return collection[:-2] if collection.endswith("ses") else collection.rstrip("s")


def openapi_path(template: str) -> tuple[str, list[tuple[str, str]]]:
    """`/v1/{name=prompts/*/versions/*}:export` -> (`/v1/prompts/{prompt}/versions/{version}:export`,
    [(prompt, name), (version, name)]): each wildcard of a variable becomes a parameter named for its collection."""
    params: list[tuple[str, str]] = []

    def expand(m: re.Match[str]) -> str:
        field, pattern = m.group(1), m.group(2) or "*"
        segs = pattern.split("/")
        for i, seg in enumerate(segs):
            if seg == "*":
                name = singular(segs[i - 1]) if i else field.split(".")[-1]
                params.append((name, field))
                segs[i] = "{" + name + "}"
        return "/".join(segs)

    return re.sub(r"\{([\w.]+)(?:=([^}]*))?\}", expand, template), params


def query_params(m: Descriptor, schemas: Schemas, skip: set[str], prefix: str = "", depth: int = 0) -> list[dict]:
    out = []
    for f in m.fields:
        name = f"{prefix}{f.json_name}"
        if f.name in skip:
            continue
        if f.message_type is not None and f.message_type.full_name not in WELL_KNOWN and not f.is_repeated:
            if depth < 1:
                out += query_params(f.message_type, schemas, set(), f"{name}.", depth + 1)
            continue
        if f.message_type is not None and f.message_type.full_name not in WELL_KNOWN:
            continue  # repeated messages and maps do not fit a query string
        out.append({"name": name, "in": "query", "required": False, "schema": schemas.field(f),
                    "description": schemas.docs.get(f"{m.full_name}.{f.name}", "")})
    return out


DEADLINE_HEADERS = {  # coordinator/rest/deadline.py
    "RequestTimeout": {"name": "X-Request-Timeout", "in": "header", "required": False,
                       "schema": {"type": "string", "pattern": r"^([0-9]{1,12}(\.[0-9]{1,9})?|\.[0-9]{1,9})$"},
                       "description": "The call's deadline in seconds from now (`30`, `2.5`). When it passes the "
                                      "call's work is cancelled and it ends DEADLINE_EXCEEDED: HTTP 504, or an "
                                      "`event: error` on a stream already open. None by default."},
    "GrpcTimeout": {"name": "grpc-timeout", "in": "header", "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,8}[HMSmun]$"},
                    "description": "The call's deadline in gRPC's format (`500m`, `30S`, `2M`); with "
                                   "X-Request-Timeout too, the earlier one applies."},
}


def operation(route: Route, schemas: Schemas, service: str, method: str) -> tuple[str, dict[str, Any]]:
    path, params = openapi_path(route.template)
    docs = schemas.docs
    role = rule(route.rpc)
    op: dict[str, Any] = {
        "operationId": f"{service}_{method}", "tags": [service],
        "summary": docs.get(f"{route.rpc.strip('/').replace('/', '.')}", ""),
        "description": f"gRPC `{route.rpc}`; needs the {role} role when auth is on."
                       + (" Streams its responses as Server-Sent Events (`data:` one message each, then `event: "
                          "end`, or `event: error` with a google.rpc.Status)." if route.server_streaming else "")
                       + (" A JSON body is one request message; an `application/x-ndjson` body is one message per "
                          "line (the client stream's chunks)." if route.client_streaming else ""),
        "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                        "description": f"a segment of `{field}`"} for name, field in params]
        + [{"$ref": f"#/components/parameters/{name}"} for name in DEADLINE_HEADERS],
    }
    top = {field.split(".")[0] for _, field in params}
    if route.body != "*":
        op["parameters"] += query_params(route.input, schemas, top | ({route.body} if route.body else set()))
    if route.body:
        body = schemas.message(route.input) if route.body == "*" else \
            schemas.field(route.input.fields_by_name[route.body])
        content = {"application/json": {"schema": body}}
        if route.client_streaming:
            content["application/x-ndjson"] = {"schema": body}
        op["requestBody"] = {"required": route.body != "*", "content": content}
    out = schemas.message(route.output)
    kind = "text/event-stream" if route.server_streaming else "application/json"
    op["responses"] = {
        "200": {"description": docs.get(route.output.full_name, "") or route.output.name,
                "content": {kind: {"schema": out}}},
        "default": {"description": "An error: the gRPC status code and message",
                    "content": {"application/json": {"schema": schemas.ref("google.rpc.Status")}}},
    }
    return path, op


def document() -> dict[str, Any]:
    schemas = Schemas(comments())
    paths: dict[str, dict[str, Any]] = {}
    tags = []
    for service in API:
        tags.append({"name": service.name, "description": schemas.docs.get(service.full_name, "")})
        for route in routes_of([service]):
            path, op = operation(route, schemas, service.name, route.rpc.rsplit("/", 1)[-1])
            paths.setdefault(path, {})[route.http_method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "promptbank REST API", "version": "v1",
                 "description": "REST/JSON for every promptbank RPC, transcoded from the protos' google.api.http "
                                "annotations; JSON by protobuf's canonical mapping; errors as google.rpc.Status "
                                "with the gRPC code and message."},
        "tags": tags,
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.out.items())), "parameters": DEADLINE_HEADERS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "a promptbank token (auth tokens mode)"}}},
        "security": [{"bearer": []}, {}],
    }


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "coordinator" / "rest" / "openapi.json"
    out.write_text(json.dumps(document(), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
