"""Rollouts: what rides behind an alias (a shadow scored on its rows, a canary answering a share of them, a
policy that promotes on evidence), how a reference resolves to all of it, and promotion itself: the move, its
evidence and who made it, in the alias history and the audit log, in one transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from promptbank_api.names import PromptRef
from promptbank_domain.evidence import Comparison
from promptbank_domain.live import OutcomeReport, Policy, RolloutRecord, Route


def resolve_route(s: Session, ref: str | PromptRef) -> Route:
    """What a reference serves: its version, and for an alias its shadow and canary with their fractions."""
    raise NotImplementedError


def get_rollout(s: Session, prompt: str, alias: str) -> RolloutRecord:
    raise NotImplementedError


def update_rollout(s: Session, prompt: str, alias: str, principal: str, *, shadow_version: int | None = None,
                   shadow_fraction: float | None = None, canary_version: int | None = None,
                   canary_fraction: float | None = None, policy: Policy | None = None) -> RolloutRecord:
    """Change the named parts (None: leave it; a version 0 clears a shadow or canary). INVALID_ARGUMENT for a
    fraction out of range or a candidate equal to the alias's own version; NOT_FOUND for a missing version. Each
    change is an alias event ("shadow", "canary", "policy") by `principal`."""
    raise NotImplementedError


def compare(s: Session, prompt: str, alias: str, candidate: int, margin: float | None = None) -> Comparison:
    """The candidate against the alias's version: paired when the candidate has shadow rows with outcomes on the
    alias's current version, else unpaired on each version's all-time totals. `margin` None: the policy's."""
    raise NotImplementedError


def promote(s: Session, prompt: str, alias: str, candidate: int, principal: str, *, margin: float | None = None,
            force: bool = False) -> tuple[RolloutRecord, Comparison, bool]:
    """Move the alias to `candidate` when the comparison clears (or `force`); FAILED_PRECONDITION with the
    comparison's summary otherwise. A shadow or canary equal to the candidate is cleared. The move goes to the
    alias history (action "promote", with the evidence) and the audit log (detail: the summary). Returns the
    rollout after, the evidence and whether it was forced."""
    raise NotImplementedError


def auto_promote(s: Session, touched: OutcomeReport) -> list[tuple[str, str, Comparison]]:
    """For each alias the outcomes touched whose policy is automatic: promote its shadow (else its canary) when
    at least `min_rows` rows clear the margin, as principal "policy". Returns (prompt, alias, evidence) of the
    moves made."""
    raise NotImplementedError
