"""How the CLI prints API messages: JSON lines (`--json`) or indented JSON for people."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message


def emit(obj: Message | dict[str, Any] | str, as_json: bool) -> None:
    if isinstance(obj, str):
        print(obj)
        return
    data = obj if isinstance(obj, dict) else MessageToDict(obj, preserving_proto_field_name=True)
    print(json.dumps(data) if as_json else json.dumps(data, indent=2))
