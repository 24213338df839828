"""The registry of prompt kinds: the one place that knows which kinds exist. Everything else asks it."""

from __future__ import annotations

import torch

from promptbank_api.errors import InvalidArgument
from promptbank_domain import kinds as described
from promptbank_kinds.base import Geometry, PromptKind, Row, members

_KINDS: dict[str, PromptKind] = {}


def register(kind: PromptKind) -> PromptKind:
    """Add `kind`; refused (TypeError) when it lacks a member of the protocol or reuses another kind's name,
    API enum value or PEFT type, so an incomplete kind fails at import, not on the first request that needs
    the missing part. Its plain description goes to the domain's registry (`promptbank_domain.kinds`), which
    TrainConfig asks for the kind's name, training defaults and projection rule (a built-in kind's is there
    already, and the same: describing it again is a no-op)."""
    missing = [m for m in members() if not hasattr(kind, m)]
    if missing:
        raise TypeError(f"prompt kind {getattr(kind, 'name', kind)!r} lacks {missing}")
    not_callable = sorted(m for m in _methods() if not callable(getattr(kind, m)))
    if not_callable:
        raise TypeError(f"prompt kind {kind.name!r}: {not_callable} must be methods")
    for other in _KINDS.values():
        for attr in ("name", "proto_enum", "peft_type"):
            if getattr(other, attr) == getattr(kind, attr):
                raise TypeError(f"prompt kinds {other.name!r} and {kind.name!r} share {attr} {getattr(kind, attr)!r}")
    described.describe(described.KindInfo(kind.name, kind.proto_enum, kind.train_defaults, kind.projects,
                                          label=kind.label, width_name=kind.width_name, help=kind.help))
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Drop the kind `name` here and in the domain (a kind registered for a while, as tests do)."""
    _KINDS.pop(name, None)
    described.forget(name)


def _methods() -> set[str]:
    return {k for k, v in vars(PromptKind).items() if not k.startswith("_") and callable(v)}


def get(name: str) -> PromptKind:
    """The kind called `name`; INVALID_ARGUMENT naming the known ones otherwise."""
    kind = _KINDS.get(name)
    if kind is None:
        raise InvalidArgument(f"prompt kind {name!r} is not one of {list(_KINDS)}")
    return kind


def all() -> tuple[PromptKind, ...]:  # noqa: A001 - the registry's own vocabulary: kinds.all()
    """Every registered kind, in registration order."""
    return tuple(_KINDS.values())


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


def by_peft_type(peft_type: object) -> PromptKind | None:
    """The kind a PEFT adapter's `peft_type` maps to; None when no kind takes it."""
    return next((k for k in _KINDS.values() if k.peft_type == peft_type), None)


def row(prompt: torch.Tensor | Row, unmarked: str) -> Row:
    """A row's prompt as a `Row`: a bare tensor is a prompt of the `unmarked` kind."""
    return prompt if isinstance(prompt, Row) else Row(prompt, unmarked)


def carried(geo: Geometry) -> list[PromptKind]:
    """The kinds a backbone of `geo` can carry."""
    return [k for k in _KINDS.values() if k.width(geo)]


def uncarried(name: str, geo: Geometry, backbone: str) -> str:
    """Why backbone `backbone` of `geo` cannot carry `name` prompts, naming the kinds it can ("" when it can)."""
    kind = get(name)
    if kind.width(geo):
        return ""
    return (f"backbone {backbone!r} cannot carry {kind.label}s; use a prompt of a kind it carries "
            f"({', '.join(k.name for k in carried(geo))})")


def misfit(name: str, columns: int, geo: Geometry, backbone: str) -> str:
    """Why a `name` prompt `columns` wide does not fit backbone `backbone` of `geo` ("" when it fits)."""
    kind = get(name)
    width = kind.width(geo)
    if not width:
        return uncarried(name, geo, backbone)
    if columns != width:
        return f"{kind.label} width {columns} does not match backbone {backbone!r} {kind.width_name} {width}"
    return ""
