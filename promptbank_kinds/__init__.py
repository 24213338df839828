"""Prompt kinds as plug-ins (PEFT's `tuners/<method>/`, vLLM's adapter registry): one module per kind behind
one protocol (`base.PromptKind`), and a registry everything else asks: `kinds.get(name)`, `kinds.all()`.

A kind says what differs between kinds: its name and API enum value, its tensor's width on a backbone (and so
whether a backbone fits it), how a row of it enters a mixed batch (vectors in the input embeddings and/or a
key/value prefix in every layer: prefill and decode alike), how it starts (from real tokens), its training
defaults and whether it trains through a prefix projection (whose tensors the checkpoint keeps), its PEFT
mapping and its size. Adding a kind is one module here, one `register` line below, an API enum value (the
kind's `proto_enum`) and, if its rows need new columns, a migration.

Why one leaf package rather than a bank half and a worker half: the bank (codec, PEFT files, fit checks), the
workers (apply, init, train) and the coordinator (the API enum, job checks) all need the kinds, and the arrows
run coordinator -> workers -> bank. A leaf that imports only torch and the shared errors (promptbank_api)
can be imported by all three without an arrow pointing up, and keeps each kind in one file. What needs a
model's code stays in the workers and is reached through small protocols the worker implements
(`BackboneView` for initialisation) or is driven by what a kind returns (`Applied.prefix` is read by the
attention wrapper in workers/deep_prompt.py). tests/test_structure.py holds the package to that.
"""

from __future__ import annotations

import torch

from promptbank_domain import kinds as _described
from promptbank_kinds import deep, input
from promptbank_kinds.base import Applied, BackboneView, Geometry, PeftDims, PromptKind, Row
from promptbank_kinds.registry import (
    all,
    by_peft_type,
    carried,
    get,
    misfit,
    names,
    register,
    uncarried,
    unregister,
)
from promptbank_kinds.registry import row as _row

INPUT = register(input.KIND).name
DEEP = register(deep.KIND).name

# Tensor bytes that name no kind, a version row from before kinds and a bare tensor given as a row's prompt are
# input prompts (what promptbank stored before deep prompts existed): the domain's constant, so TrainConfig's
# default kind is the same one.
UNMARKED = _described.UNMARKED
assert UNMARKED == INPUT

# The kind of a train job that names none, where the backbone carries it (elsewhere the first registered kind
# it carries): the domain's choice (promptbank_domain.kinds says why).
DEFAULT = _described.preferred()
assert DEFAULT == DEEP


def default_for(geo: Geometry) -> PromptKind:
    """The kind a job that names none trains on a backbone of `geo`."""
    fits = carried(geo)
    return get(DEFAULT) if get(DEFAULT) in fits else fits[0]


def row(prompt: torch.Tensor | Row) -> Row:
    """A row's prompt as a `Row` (a bare tensor is an UNMARKED prompt)."""
    return _row(prompt, UNMARKED)


__all__ = ["DEEP", "DEFAULT", "INPUT", "UNMARKED", "Applied", "BackboneView", "Geometry", "PeftDims", "PromptKind",
           "Row", "all", "by_peft_type", "carried", "default_for", "get", "misfit", "names", "register", "row",
           "uncarried", "unregister"]
