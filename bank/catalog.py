"""The prompt catalog over one SQLAlchemy session: backbones, prompts, immutable versions, aliases, request ids.

Every function takes the caller's session (one per RPC); the caller commits. Public functions take names and
domain types and return read models (bank/reads.py builds them): no ORM row leaves the bank. Functions raise
the domain errors of :mod:`promptbank_api.errors` with messages that name the bad value.

Each part lives in a module of its own (backbones, prompts, versions and aliases, request ids, the generation,
outcomes of served rows, rollouts behind aliases);
this module names them all, so a caller writes `catalog.resolve(...)` whichever part it needs.
"""

from __future__ import annotations

from bank.backbones import find_backbone, get_backbone, list_backbones, remove_backbone, upsert_backbone
from bank.generation import RESOLVING, bump_generation, generation
from bank.idempotency import remember_request, seen_request
from bank.outcomes import live_stats, paired_counts, record_outcomes, record_served
from bank.outcomes import prune as prune_served_rows
from bank.prompts import create_prompt, delete_prompt, find_prompt, get_prompt, list_prompts, update_prompt
from bank.rollouts import (
    auto_promote,
    compare,
    get_rollout,
    promote,
    resolve_route,
    rollout_evidence,
    update_rollout,
)
from bank.versions import (
    add_version,
    alias_history,
    delete_alias,
    delete_version,
    get_version,
    list_versions,
    nearest_candidates,
    resolve,
    resolve_served,
    set_alias,
    set_version_tags,
    tensor_by_sha,
    version_tensor,
)

__all__ = [
    "RESOLVING", "add_version", "alias_history", "auto_promote", "bump_generation", "compare", "create_prompt",
    "delete_alias", "delete_prompt", "delete_version", "find_backbone", "find_prompt", "generation", "get_backbone",
    "get_prompt", "get_rollout", "get_version", "list_backbones", "list_prompts", "list_versions", "live_stats",
    "nearest_candidates", "paired_counts", "promote", "prune_served_rows", "record_outcomes", "record_served",
    "remember_request", "remove_backbone", "resolve", "resolve_route", "resolve_served", "rollout_evidence",
    "seen_request", "set_alias", "set_version_tags", "tensor_by_sha", "update_prompt", "update_rollout",
    "upsert_backbone", "version_tensor",
]
