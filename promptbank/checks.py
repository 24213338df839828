"""Checks of the SDK's own arguments, made before a call leaves: a wrong value named here, in the caller's
terms, rather than as a server status about a field the caller never wrote (or, worse, a changed value)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

INT32, INT64 = 2**31 - 1, 2**63 - 1


def seconds(value: Any, name: str = "timeout") -> float:
    """A deadline in seconds: a finite number > 0 (0, a negative number or NaN would reach the server as an
    already-passed deadline and come back as DEADLINE_EXCEEDED)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def address(value: str) -> str:
    """A server address as given: an empty one is a mistake, not a wish for the default; a URL (the console's
    http://host:port/) or a port past 65535 (gRPC would take it modulo 65536: another port) is refused."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the server address is empty ({value!r}); give host:port, or leave it out to use "
                         f"$PROMPTBANK_SERVER or localhost:50051")
    value = value.strip()
    if re.match(r"(?i)https?://", value):
        raise ValueError(f"the server address {value!r} is a URL; give the gRPC address as host:port (the HTTP "
                         f"port serves REST and the console, not gRPC)")
    port = re.fullmatch(r"(?:\[[^\]]*\]|[^:\[\]]*):(\d+)", value)
    if port and not 1 <= int(port[1]) <= 65535:
        raise ValueError(f"the server address {value!r} has port {port[1]}; ports run from 1 to 65535")
    return value


def integer(value: Any, name: str, low: int, high: int) -> int:
    """An int in [low, high] for an integer field (a float, a string or a value past the field's width would
    reach protobuf as "bad argument type" or "Value out of range", naming nothing)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range ({low}..{high})")
    return value


def text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    return value


def strings(value: Iterable[str], name: str) -> list[str]:
    """A list of strings; a bare string is refused (it would iterate into its characters: "ab" -> ["a", "b"])."""
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a list of strings, not the string {value!r} (write [{value!r}])")
    out = list(value)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{name} must hold strings, got {bad[0]!r}")
    return out


def rows(value: Iterable[Any], what: str, first: str = "prompt", both: bool = True,
         start: int = 0) -> list[tuple[Any, str]]:
    """(prompt, text) pairs (or (text, label) with `first`="text"): each row a 2-item pair of strings (`both`
    False: the first item is checked by the caller, e.g. an ensemble's list of references)."""
    out = []
    for i, row in enumerate(value, start):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or len(row) != 2 or \
                not isinstance(row[1], str) or (both and not isinstance(row[0], str)):
            second = "text" if first == "prompt" else "label"
            raise TypeError(f"{what} takes ({first}, {second}) pairs of strings; row {i} is {row!r}")
        out.append((row[0], row[1]))
    return out


def fraction(value: Any, name: str, *, low_open: bool = False) -> float:
    """A share of traffic or a margin: a finite number in [0, 1] ((0, 1] with `low_open`: a shadow that scores no
    row is no shadow)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not (0 < value <= 1 if low_open else 0 <= value <= 1):
        span = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {span}, got {value!r}")
    return float(value)


def count(value: Any, name: str) -> int:
    """A whole number >= 0 (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def pair(row: Any, i: int, what: str) -> tuple[str, str]:
    """Example `i`: a (text, label) pair of strings, checked as it is read (uploads stream their rows)."""
    return rows([row], what, "text", start=i)[0]
