"""Prompt kinds as the domain sees them: a registry of plain descriptions (a name, the API enum value, the
training defaults that differ, whether a projection may train it), filled by whoever knows the kinds.

How a kind works (shapes, codec, batch assembly, training) lives in `promptbank_kinds`, which needs torch; this
leaf may not import it. So the arrow is inverted: `promptbank_kinds.register` describes each kind here, and
`TrainConfig` validates and picks defaults by asking this registry, never by naming a kind. The SDK, which does
not load the server's kinds, describes them from its own copy (promptbank/kinds.py; a test ties the two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from promptbank_api.errors import InvalidArgument

# The kind of anything that names none: tensor bytes without a kind, a version row or a stored job config from
# before kinds, a TrainConfig built without one (promptbank stored only input prompts then).
UNMARKED = "input"


@dataclass(frozen=True)
class KindInfo:
    """What the domain knows of one prompt kind: plain data, no mechanics."""

    name: str  # stored in a version's row, its bytes' metadata and a job's config
    proto_enum: str  # the API's PromptKind value name ("PROMPT_KIND_INPUT")
    train_defaults: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields whose defaults differ
    projects: bool = False  # whether it may train through a prefix projection (`prefix_projection` > 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_defaults", MappingProxyType(dict(self.train_defaults)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KindInfo) and (self.name, self.proto_enum, dict(self.train_defaults),
                                                 self.projects) == (other.name, other.proto_enum,
                                                                    dict(other.train_defaults), other.projects)

    def __hash__(self) -> int:
        return hash((self.name, self.proto_enum))


@dataclass(frozen=True)
class Geometry:
    """What a backbone offers a prompt: its hidden size and where key/value prefixes go (self-attention layers,
    key/value heads, head width; zeros when its attention cannot carry them). The bank stores these numbers
    with a backbone (`BackboneRecord.geometry`), a replica reports them, so both sides ask a kind whether it
    fits without the model."""

    hidden_size: int
    layers: int = 0
    kv_heads: int = 0
    head_dim: int = 0

    @classmethod
    def of(cls, hidden_size: int, deep: tuple[int, int, int] = (0, 0, 0)) -> Geometry:
        """From a hidden size and a `(layers, key/value heads, head width)` triple (BackboneInfo.deep)."""
        return cls(hidden_size, *deep)


_KINDS: dict[str, KindInfo] = {}
_PREFERRED: list[str] = []  # the kind a train job that names none gets, where its backbone carries it


def describe(info: KindInfo) -> KindInfo:
    """Add `info`; describing the same kind again is a no-op (the server's kinds and the SDK's copy may both
    describe it in one process), a different description under a taken name or enum value is a TypeError."""
    known = _KINDS.get(info.name)
    if known is not None:
        if known != info:
            raise TypeError(f"prompt kind {info.name!r} is described twice, differently: {known} and {info}")
        return known
    clash = next((k for k in _KINDS.values() if k.proto_enum == info.proto_enum), None)
    if clash is not None:
        raise TypeError(f"prompt kinds {clash.name!r} and {info.name!r} share proto_enum {info.proto_enum!r}")
    _KINDS[info.name] = info
    return info


def forget(name: str) -> None:
    """Drop a description (a kind registered only for a while, as tests do)."""
    _KINDS.pop(name, None)
    if name in _PREFERRED:
        _PREFERRED.remove(name)


def prefer(name: str) -> str:
    """Make the described kind `name` the one a train job that names none gets (where its backbone carries it)."""
    get(name)
    _PREFERRED[:] = [name]
    return name


def preferred() -> str:
    """The kind a train job that names none gets; UNMARKED until a kind is preferred."""
    return _PREFERRED[0] if _PREFERRED else UNMARKED


def get(name: str) -> KindInfo:
    """The description of `name`; INVALID_ARGUMENT naming the described kinds otherwise."""
    info = _KINDS.get(name)
    if info is None:
        raise InvalidArgument(f"prompt kind {name!r} is not one of {list(_KINDS)}")
    return info


def names() -> tuple[str, ...]:
    """Every described kind, in the order they were described."""
    return tuple(_KINDS)


def projected() -> tuple[str, ...]:
    """The kinds that may train through a prefix projection."""
    return tuple(k.name for k in _KINDS.values() if k.projects)
