"""One Classify row's plan under its alias's rollout: which version answers (the alias's, or its canary for a
share of routing keys), which versions are averaged with it (an ensemble), whether a shadow is scored beside
it in the same forward, and the id its result is recorded under."""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from promptbank_api.errors import InvalidArgument
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_domain.catalog import ServedVersion
from promptbank_domain.live import Route, ServedRow

_draw = random.SystemRandom()  # rows without a routing key: a fresh draw each (not seeded, not shared)


def share(prompt: str, alias: str, key: str) -> float:
    """Where a routing key falls in [0, 1) for one alias: the same key lands on the same side of every canary
    fraction of that alias, while another alias splits the keys independently."""
    digest = hashlib.sha256(f"{prompt}@{alias}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


@dataclass(frozen=True)
class RowPlan:
    """`members`: the answering version first, then ensemble members (probabilities averaged); `shadow`: one
    more version scored on the row, never answered; `scored` is both, in forward order."""

    members: list[ServedVersion]
    shadow: ServedVersion | None
    alias: str
    canary: bool
    result_id: str

    @property
    def scored(self) -> list[ServedVersion]:
        return [*self.members, *([self.shadow] if self.shadow is not None else [])]

    def served_row(self, label: int, shadow_label: int) -> ServedRow:
        return ServedRow(result_id=self.result_id, version_id=self.members[0].id, label=label,
                         at=datetime.now(UTC).replace(tzinfo=None), alias=self.alias, canary=self.canary,
                         shadow_version_id=self.shadow.id if self.shadow is not None else 0, shadow_label=shadow_label)


def plan(i: int, row: inf.ClassifyRow, routes: dict[str, Route], keep: bool) -> RowPlan:
    """Plan row `i`; `keep`: the server keeps outcomes (the result gets an id and the row is recorded)."""
    route = routes[row.prompt]
    answering, canary = route.primary, False
    if route.canary is not None and route.canary_fraction > 0:
        point = share(route.primary.prompt, route.alias, row.routing_key) if row.routing_key else _draw.random()
        if point < route.canary_fraction:
            answering, canary = route.canary, True
    members = [answering, *(routes[ref].primary for ref in row.ensemble)]
    if len({m.prompt for m in members}) != 1 or len({m.backbone for m in members}) != 1:
        raise InvalidArgument(f"rows[{i}]: ensemble members must be versions of one task on one backbone")
    # a shadow is compared with the alias's own version, so only rows that version answers are shadowed
    shadow = None
    if keep and route.shadow is not None and not canary and _draw.random() < route.shadow_fraction:
        shadow = route.shadow
    return RowPlan(members, shadow, route.alias, canary, secrets.token_hex(16) if keep else "")
