"""How the CLI prints: tables with headers for people, one JSON object a line with `--json`.

JSON keeps numbers as numbers: protobuf's JSON mapping writes 64-bit integers as strings, which a script
reading `"version": "1"` would have to undo, so they are turned back into integers here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def _numbers(msg: Message, data: dict[str, Any]) -> dict[str, Any]:
    for fd in msg.DESCRIPTOR.fields:
        if fd.name not in data:
            continue
        value, repeated = getattr(msg, fd.name), fd.is_repeated
        mt = fd.message_type
        if mt is not None and mt.GetOptions().map_entry:
            if mt.fields_by_name["value"].type in _INT64:
                data[fd.name] = {k: int(v) for k, v in data[fd.name].items()}
        elif mt is not None:
            if mt.full_name.startswith("google.protobuf."):
                continue  # Timestamp, Struct, ...: their JSON form is the useful one
            data[fd.name] = ([_numbers(m, d) for m, d in zip(value, data[fd.name], strict=True)] if repeated
                             else _numbers(value, data[fd.name]))
        elif fd.type in _INT64:
            data[fd.name] = [int(x) for x in data[fd.name]] if repeated else int(data[fd.name])
    return data


def to_data(msg: Message) -> dict[str, Any]:
    """A message as JSON-ready data: field names as in the protos, every field present, integers as numbers."""
    data = MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _numbers(msg, data)


def emit(obj: Message | dict[str, Any], as_json: bool) -> None:
    """One object: a JSON line with --json, indented JSON for people."""
    data = to_data(obj) if isinstance(obj, Message) else obj
    print(json.dumps(data) if as_json else json.dumps(data, indent=2))


def plural(n: int, word: str, many: str = "") -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def table(items: Iterable[Any], columns: Sequence[tuple[str, Callable[[Any], object]]], as_json: bool,
          what: str) -> None:
    """A list: one JSON line per item with --json; otherwise a table with a header, or a line saying that
    there are no `what` (e.g. "prompts")."""
    items = list(items)
    if as_json:
        for item in items:
            print(json.dumps(to_data(item) if isinstance(item, Message) else item))
        return
    if not items:
        print(f"no {what}")
        return
    rows = [[str(get(item)) for _, get in columns] for item in items]
    headers = [h for h, _ in columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
