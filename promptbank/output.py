"""How the CLI prints: tables with headers for people, one JSON object a line with `--json`.

JSON keeps numbers as numbers: protobuf's JSON mapping writes 64-bit integers as strings, which a script
reading `"version": "1"` would have to undo, so they are turned back into integers here. Enum values print as
the CLI's flags take them: a prefixed name loses its type's prefix and is lower-case (`PROMPT_KIND_DEEP` ->
`deep`, as `--kind deep`; `ROLE_TRAINER` -> `trainer`); unprefixed ones (job states) print as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def enum_text(enum: EnumDescriptor | Any, number: int) -> str:  # (protobuf's C descriptors type apart)
    """An enum value as the CLI writes it (see the module's docstring)."""
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(enum.name)).upper() + "_"
    return value.name.removeprefix(prefix).lower() if value.name.startswith(prefix) else value.name


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
        elif fd.enum_type is not None:
            data[fd.name] = ([enum_text(fd.enum_type, x) for x in value] if repeated
                             else enum_text(fd.enum_type, value))
    return data


def to_data(msg: Message) -> dict[str, Any]:
    """A message as JSON-ready data: field names as in the protos, every field present, integers as numbers."""
    data = MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _numbers(msg, data)


LIST_SHOWN = 10  # items of a list shown for people (--json prints them all)
CELL_CHARS = 60  # characters of a table cell for people (--json prints them whole)


def _lines(data: Any, indent: str = "") -> list[str]:
    """`field: value` lines for people: nested objects indented, scalar lists on one line (the first
    LIST_SHOWN, then a count), empty fields left out."""
    out = []
    for key, value in data.items():
        if value in ("", [], {}, None):
            continue
        if isinstance(value, dict):
            out += [f"{indent}{key}:", *_lines(value, indent + "  ")]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                out += [f"{indent}{key}[{i}]:", *_lines(item, indent + "  ")]
        elif isinstance(value, list):
            more = f" ... ({len(value)} in all)" if len(value) > LIST_SHOWN else ""
            out.append(f"{indent}{key}: {', '.join(map(str, value[:LIST_SHOWN]))}{more}")
        else:
            out.append(f"{indent}{key}: {value}")
    return out


def emit(obj: Message | dict[str, Any], as_json: bool) -> None:
    """One object: a JSON line with --json, `field: value` lines for people."""
    data = to_data(obj) if isinstance(obj, Message) else obj
    print(json.dumps(data) if as_json else "\n".join(_lines(data)))


def cell(text: str, most: int = CELL_CHARS) -> str:
    """A table cell cut to `most` characters (a prompt with 1,000 labels would make every line 9,000 wide)."""
    return text if len(text) <= most else text[: most - 3] + "..."


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
    rows = [[cell(str(get(item))) for _, get in columns] for item in items]
    headers = [h for h, _ in columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
