"""Requests and responses between JSON (protobuf's canonical mapping, lowerCamelCase names) and messages.

A request is assembled as gRPC would receive it: the body (the whole request for `body: "*"`, else one field),
then the query string for the fields the body does not carry (`?pageSize=10&tag=x`, dotted names for nested
fields, repeated keys for repeated fields), then the path's variables. What does not fit the request message
is INVALID_ARGUMENT naming it, as a malformed gRPC field would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from coordinator.rest.routes import Route
from promptbank_api.errors import InvalidArgument

WELL_KNOWN_LEAVES = ("google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask")


def new_message(desc: Descriptor) -> Message:
    return message_factory.GetMessageClass(desc)()


def _field(desc: Descriptor, name: str) -> FieldDescriptor:
    for f in desc.fields:
        if name in (f.name, f.json_name):
            return f
    raise InvalidArgument(f"{desc.name} has no field {name!r}")


def _is_leaf(f: FieldDescriptor) -> bool:
    return f.message_type is None or f.message_type.full_name in WELL_KNOWN_LEAVES


def query_dict(desc: Descriptor, pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`?a.b=1&c=x&c=y` as the JSON object ParseDict reads: {"a": {"b": "1"}, "c": ["x", "y"]}."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        node, d = out, desc
        parts = key.split(".")
        for i, part in enumerate(parts):
            f = _field(d, part)
            if i < len(parts) - 1:
                if _is_leaf(f) or f.is_repeated or f.message_type is None:
                    raise InvalidArgument(f"query parameter {key!r}: {part!r} is not a message field")
                node, d = node.setdefault(f.name, {}), f.message_type
                continue
            if not _is_leaf(f):
                raise InvalidArgument(f"query parameter {key!r} names a message; name one of its fields")
            v: Any = value
            if f.type == FieldDescriptor.TYPE_BOOL:
                if value not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"query parameter {key!r}={value!r}: use true or false")
                v = value in ("true", "1")
            if f.is_repeated:
                node.setdefault(f.name, []).append(v)
            else:
                node[f.name] = v
    return out


def _nested(path: str, value: str) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _parse(obj: Any, msg: Message, what: str) -> None:
    try:
        json_format.ParseDict(obj, msg)
    except json_format.ParseError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None


def unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose names are distinct: a repeated name would keep only its last value, silently."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise InvalidArgument(f"the body names {name!r} twice; send each field once")
        out[name] = value
    return out


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body, object_pairs_hook=unique_names) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"the body is not JSON: {exc}") from None


def build_request(route: Route, variables: dict[str, str], query: Iterable[tuple[str, str]], body: bytes) -> Message:
    """The request message of `route` from its path variables, query string and body."""
    msg = new_message(route.input)
    if route.body == "*":
        _parse(load_json(body), msg, "body")
    elif route.body:
        _parse({route.body: load_json(body)}, msg, "body")
    if route.body != "*":
        _parse(query_dict(route.input, query), msg, "query")
    for path, value in variables.items():
        _parse(_nested(path, value), msg, f"path variable {path}")
    return msg


def to_json(msg: Message) -> dict[str, Any]:
    """Protobuf's canonical JSON: lowerCamelCase names, int64 as strings, enums by name, defaults omitted."""
    return json_format.MessageToDict(msg)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
