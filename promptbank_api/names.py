"""Resource names and prompt references as both sides read them: `task`, `task@alias`, `task/versions/N`
(optionally `prompts/`-prefixed), `jobs/{id}`, and API timestamps.

The client and the server parse with these same functions, so a reference means one thing everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from promptbank_api.errors import InvalidArgument

MAX_VERSION = 2**63 - 1  # version numbers are 64-bit in SQL and in the API
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
NAME_CHARS = {"alias": 64, "backbone": 64, "token": 64}  # the bank's column widths; any other kind: 128
RESERVED_ALIASES = frozenset({"latest"})  # moved by every publish, never named by a caller's job
_REF_RE = re.compile(r"^(?:prompts/)?(?P<p>[^/@]+)(?:@(?P<a>[^/@]+)|/versions/(?P<v>\d+))?$")


@dataclass(frozen=True)
class PromptRef:
    """A parsed reference; exactly one of `alias`/`version` is set (alias defaults to `latest`)."""

    prompt: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.prompt}/versions/{self.version}" if self.version is not None else f"{self.prompt}@{self.alias}"


def check_name(kind: str, name: str) -> str:
    """Validate a short resource id (prompt, alias, backbone, token): at most as long as the column it goes in."""
    most = NAME_CHARS.get(kind, 128)
    if not NAME_RE.match(name or "") or len(name) > most:
        shown = f"{name[:40]!r}... ({len(name)} characters)" if len(name or "") > most else repr(name)
        raise InvalidArgument(f"invalid {kind} name {shown}: use 1-{most} lowercase letters, digits, '_', '-', '.', "
                              f"starting with a letter or digit")
    return name


def parse_ref(ref: str) -> PromptRef:
    """Parse a prompt reference; a bare task means its `latest` alias."""
    m = _REF_RE.match(ref or "")  # as written: ' task' is not 'task', as 'ta sk' is not
    if not m:
        shown = repr(ref) if len(ref or "") <= 200 else f"{ref[:40]!r}... ({len(ref)} characters)"
        spaced = " (it starts or ends with white space)" if ref and ref != ref.strip() else ""
        raise InvalidArgument(f"invalid prompt reference {shown}{spaced}: use 'task', 'task@alias' or "
                              f"'task/versions/N'")
    prompt = check_name("prompt", m["p"])
    if m["v"] is not None:
        number = int(m["v"])
        if not 1 <= number <= MAX_VERSION:
            raise InvalidArgument(f"invalid prompt reference {ref!r}: version numbers run from 1 to {MAX_VERSION}")
        return PromptRef(prompt, version=number)
    return PromptRef(prompt, alias=check_name("alias", m["a"] or "latest"))


def movable_alias(alias: str, where: str = "alias") -> str:
    """An alias a caller may point or remove: a valid name and not one the bank moves itself (`latest`)."""
    check_name("alias", alias)
    if alias in RESERVED_ALIASES:
        raise InvalidArgument(f"{where} {alias!r} is reserved: every publish moves it to the newest version by "
                              f"itself; name another alias")
    return alias


def strip_collection(name: str, collection: str) -> str:
    """`prompts/x` -> `x`; `x` -> `x`."""
    prefix = collection + "/"
    return name[len(prefix) :] if name.startswith(prefix) else name


def version_name(prompt: str, number: int) -> str:
    """The resource name of a version: `prompts/{prompt}/versions/{number}`."""
    return f"prompts/{prompt}/versions/{number}"


def job_name(job: str) -> str:
    """`abc` or `jobs/abc` -> `jobs/abc`."""
    return job if job.startswith("jobs/") else f"jobs/{job}"


def to_timestamp(when: datetime | None, name: str = "time") -> Timestamp | None:
    """A datetime (naive = UTC, how the bank stores times) as an API Timestamp; None stays unset; anything else
    is a TypeError naming `name` (a string such as '2026-01-01' is not parsed by guess)."""
    if when is None:
        return None
    if not isinstance(when, datetime):
        raise TypeError(f"{name} must be a datetime (e.g. datetime(2026, 1, 1)), got {when!r}")
    t = Timestamp()
    t.FromDatetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    return t


def from_timestamp(t: Timestamp) -> datetime | None:
    """An API Timestamp as naive UTC; unset -> None; one outside 0001..9999 or with bad nanos is
    INVALID_ARGUMENT."""
    if not t.seconds and not t.nanos:
        return None
    try:
        return t.ToDatetime()
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(f"timestamp {t.seconds}s {t.nanos}ns is outside the years 1..9999") from None
