"""Prompt kinds as the domain sees them: a registry of plain descriptions (a name, the API enum value, what
messages and help call it, the training defaults that differ, whether a projection may train it).

How a kind works (shapes, codec, batch assembly, training) lives in `promptbank_kinds`, which needs torch; this
leaf may not import it. The built-in kinds' descriptions live here (`INPUT`, `DEEP`), described at import, so
`TrainConfig` validates and picks defaults without loading torch, and the SDK's CLI reads the same data offline;
each kind module in `promptbank_kinds` takes its name and wording from its description. A plug-in kind describes
itself when `promptbank_kinds.register` adds it.
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
    label: str = ""  # in messages: "input prompt"
    width_name: str = ""  # what its tensor's width is called in messages ("hidden size")
    help: str = ""  # what it trains, for `--kind`'s help ("'input' vectors before the text")

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_defaults", MappingProxyType(dict(self.train_defaults)))

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.proto_enum, dict(self.train_defaults), self.projects, self.label, self.width_name,
                self.help)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KindInfo) and self._key() == other._key()

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
    """Add `info`; describing the same kind again is a no-op (a built-in kind's module registers the description
    this module already holds), a different description under a taken name or enum value is a TypeError."""
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


# ---------------------------------------------------------------- the built-in kinds (promptbank_kinds/input.py, deep.py)

INPUT = describe(KindInfo(UNMARKED, "PROMPT_KIND_INPUT", label="input prompt", width_name="hidden size",
                          help="'input' vectors before the text"))
DEEP = describe(KindInfo(
    "deep", "PROMPT_KIND_DEEP",
    # Picked on the development split (docs/research.md, "Through a prefix projection"): a deep prompt trains
    # through a 512-unit MLP, whose steps move the prefix far more than a direct step at the same rate (so a
    # small rate), and reaches in 5 epochs what the direct prefix did not in 12.
    {"learning_rate": 5e-4, "epochs": 5, "prefix_projection": 512}, projects=True,
    label="deep prompt", width_name="deep prompt width",
    help="a 'deep' prompt, keys and values for every attention layer (prefix tuning)",
))
# The kind of a train job that names none, where the backbone carries it (elsewhere the first kind it carries):
# on the test split deep prompts on their defaults outscored input prompts on theirs (README, "Input and deep
# prompts"; bench/quality.py).
prefer(DEEP.name)


def help_text() -> str:
    """What `--kind` chooses from: each described kind's help, the preferred kind's first."""
    first = preferred()
    order = [first, *(k for k in _KINDS if k != first)]
    return ", or ".join(_KINDS[k].help or repr(k) for k in order)
