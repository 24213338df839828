"""Prompt references: `task`, `task@alias`, `task/versions/N`, with an optional `prompts/` prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

from promptbank_api.errors import InvalidArgument

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
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
    """Validate a short resource id (prompt, alias, backbone)."""
    if not NAME_RE.match(name or ""):
        raise InvalidArgument(
            f"invalid {kind} name {name!r}: use 1-128 lowercase letters, digits, '_', '-', '.', starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> PromptRef:
    """Parse a prompt reference; a bare task means its `latest` alias."""
    m = _REF_RE.match((ref or "").strip())
    if not m:
        raise InvalidArgument(f"invalid prompt reference {ref!r}: use 'task', 'task@alias' or 'task/versions/N'")
    prompt = check_name("prompt", m["p"])
    if m["v"] is not None:
        return PromptRef(prompt, version=int(m["v"]))
    return PromptRef(prompt, alias=check_name("alias", m["a"] or "latest"))


def strip_collection(name: str, collection: str) -> str:
    """`prompts/x` -> `x`; `x` -> `x`."""
    prefix = collection + "/"
    return name[len(prefix) :] if name.startswith(prefix) else name


def version_name(prompt: str, number: int) -> str:
    """The resource name of a version: `prompts/{prompt}/versions/{number}`."""
    return f"prompts/{prompt}/versions/{number}"
