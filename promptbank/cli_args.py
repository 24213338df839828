"""argparse types for the command line's values: a bad value ends in argparse's one-line usage error (exit 2)
naming the flag, before anything is sent (the SDK's own checks say the same in its terms)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from promptbank import checks, live_calls

T = TypeVar("T")
INT64 = (-(1 << 63), (1 << 63) - 1)  # what an int64 field on the wire holds


def _said(check: Callable[[str], T], name: str) -> Callable[[str], T]:
    """`check` as an argparse type: its ValueError/TypeError becomes the flag's error message."""
    def parse(text: str) -> T:
        try:
            return check(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None


def _int64(text: str) -> int:
    n = _integer(text)
    if not INT64[0] <= n <= INT64[1]:
        raise ValueError(f"{n} is out of range (a 64-bit integer: {INT64[0]}..{INT64[1]})")
    return n


def _int32(text: str) -> int:
    n = _integer(text)
    if not -(1 << 31) <= n < 1 << 31:
        raise ValueError(f"{n} is out of range (a 32-bit integer)")
    return n


def _port(text: str) -> int:
    n = _integer(text)
    if not 0 <= n <= 65535:
        raise ValueError(f"must be a port in 0..65535, got {n}")
    return n


def _at_least_zero(text: str) -> int:
    n = _integer(text)
    if n < 0:
        raise ValueError(f"must be >= 0, got {n}")
    return n


def _at_least_one(text: str) -> int:
    n = _integer(text)
    if n < 1:
        raise ValueError(f"must be >= 1, got {n}")
    return n


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _seconds(text: str) -> float:
    n = _number(text)
    if not math.isfinite(n) or n <= 0:
        raise ValueError(f"must be a number of seconds > 0, got {text!r}")
    return n


def _share(text: str) -> float:
    return checks.fraction(_number(text), "the value")


def _shadow_share(text: str) -> float:
    return checks.fraction(_number(text), "the value", low_open=True)


def _count(text: str) -> int:
    return checks.count(_integer(text), "the value")


def _alias(text: str) -> str:
    live_calls.alias_ref(text, "the alias")
    return text


seconds = _said(_seconds, "seconds")
fraction = _said(_share, "fraction")
shadow_fraction = _said(_shadow_share, "fraction")
count = _said(_count, "count")
alias = _said(_alias, "alias")
address = _said(checks.address, "address")
int64 = _said(_int64, "int64")
int32 = _said(_int32, "int32")
port = _said(_port, "port")
at_least_zero = _said(_at_least_zero, "count")
at_least_one = _said(_at_least_one, "count")
nonempty = _said(_nonempty, "name")
