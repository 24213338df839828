"""A REST call's deadline, from its headers: gRPC's own `grpc-timeout` (what a gRPC client or a gRPC-aware proxy
writes: 1 to 8 digits and a unit, `500m`, `30S`, `2M`) or `X-Request-Timeout: <seconds>` (a decimal number,
`30`, `2.5`). With both, the earlier deadline applies; with neither, none does, as for a gRPC call without
`grpc-timeout`. When it passes, the invoker cancels the call's work (coordinator/rest/invoke.py) and the caller
gets DEADLINE_EXCEEDED: HTTP 504, or an error event on a stream already open. A malformed value is refused
(400) naming its header, before the call runs.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from multidict import MultiMapping

from promptbank_api.errors import InvalidArgument

GRPC_TIMEOUT = "grpc-timeout"
REQUEST_TIMEOUT = "X-Request-Timeout"
UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
GRPC_FORMAT = re.compile(r"([0-9]{1,8})([HMSmun])")  # gRPC over HTTP/2: TimeoutValue TimeoutUnit
SECONDS_FORMAT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?|\.[0-9]{1,9}")
MOST_S = 99_999_999 * 3600.0  # the longest `grpc-timeout` can say


@dataclass(frozen=True)
class Deadline:
    """When a call must be over (the event loop's clock), and the header that said so (for its message)."""

    when: float
    said: str  # "X-Request-Timeout: 2.5"

    def remaining(self) -> float:
        return max(self.when - asyncio.get_running_loop().time(), 0.0)

    def passed(self) -> str:
        return f"the call's deadline passed ({self.said})"


def _one(headers: MultiMapping[str], name: str) -> str | None:
    values = headers.getall(name, [])
    if len(values) > 1:
        raise InvalidArgument(f"{name} is given {len(values)} times; give it once")
    return values[0].strip() if values else None


def _grpc_seconds(value: str) -> float:
    m = GRPC_FORMAT.fullmatch(value)
    if m is None or int(m.group(1)) == 0:
        raise InvalidArgument(f"{GRPC_TIMEOUT}: {value!r} is not a gRPC timeout: 1 to 8 digits, not all zero, then a "
                              f"unit among H, M, S, m, u, n (e.g. {GRPC_TIMEOUT}: 30S, or 500m for 0.5 s)")
    return int(m.group(1)) * UNITS[m.group(2)]


def _plain_seconds(value: str) -> float:
    seconds = float(value) if SECONDS_FORMAT.fullmatch(value) else 0.0
    if not 0 < seconds <= MOST_S:
        raise InvalidArgument(f"{REQUEST_TIMEOUT}: {value!r} is not a number of seconds > 0 (e.g. "
                              f"{REQUEST_TIMEOUT}: 30, or 2.5)")
    return seconds


def deadline_of(headers: MultiMapping[str]) -> Deadline | None:
    """The call's deadline from its headers, counted from now; None without one. InvalidArgument (400) naming the
    header for a value that is not one."""
    found = []
    for name, parse in ((GRPC_TIMEOUT, _grpc_seconds), (REQUEST_TIMEOUT, _plain_seconds)):
        value = _one(headers, name)
        if value is not None:
            found.append((parse(value), f"{name}: {value}"))
    if not found:
        return None
    seconds, said = min(found)
    return Deadline(asyncio.get_running_loop().time() + seconds, said)


def scope(deadline: Deadline | None) -> asyncio.Timeout:
    """An `async with` that cancels what runs in it when the deadline passes (TimeoutError out of it then)."""
    return asyncio.timeout_at(None if deadline is None else deadline.when)
