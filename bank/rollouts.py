"""Rollouts: what rides behind an alias (a shadow scored on its rows, a canary answering a share of them, a
policy that promotes on evidence), how a reference resolves to all of it, and promotion itself: the move, its
evidence and who made it, in the alias history and the audit log, in one transaction."""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from bank import outcomes, reads
from bank.audit import record_write
from bank.models import Alias, AliasEvent, Prompt, PromptVersion, utcnow
from bank.prompts import _find_prompt_row, _prompt_row
from bank.versions import _alias_row, _resolve_row, _set_alias_row, _version_row
from promptbank_api.errors import FailedPrecondition, InvalidArgument
from promptbank_api.names import PromptRef, parse_ref, version_name
from promptbank_domain import evidence
from promptbank_domain.evidence import Comparison
from promptbank_domain.live import POLICY_PRINCIPAL, OutcomeReport, Policy, RolloutRecord, Route


def resolve_route(s: Session, ref: str | PromptRef) -> Route:
    """What a reference serves: its version, and for an alias its shadow and canary with their fractions."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    if r.version is not None:
        return Route(primary=reads.served(_resolve_row(s, r)))
    a = _alias_row(s, _prompt_row(s, r.prompt), r.alias or "latest")
    return Route(primary=reads.served(a.version), alias=a.name,
                 shadow=reads.served(a.shadow_version) if a.shadow_version is not None else None,
                 shadow_fraction=a.shadow_fraction,
                 canary=reads.served(a.canary_version) if a.canary_version is not None else None,
                 canary_fraction=a.canary_fraction)


def get_rollout(s: Session, prompt: str, alias: str) -> RolloutRecord:
    return _rollout(_alias_row(s, _prompt_row(s, prompt), alias))


def rollout_evidence(s: Session, prompt: str, alias: str) -> tuple[Comparison | None, Comparison | None]:
    """The alias's shadow and canary each against its version, by the policy's margin (None: no such one)."""
    p = _prompt_row(s, prompt)
    a = _alias_row(s, p, alias)
    shadow, canary = a.shadow_version, a.canary_version
    return (_compare(s, p, a, shadow, None) if shadow is not None else None,
            _compare(s, p, a, canary, None) if canary is not None else None)


def update_rollout(s: Session, prompt: str, alias: str, principal: str, *, shadow_version: int | None = None,
                   shadow_fraction: float | None = None, canary_version: int | None = None,
                   canary_fraction: float | None = None, policy: Policy | None = None) -> RolloutRecord:
    """Change the named parts (None: leave it; a version 0 clears a shadow or canary). INVALID_ARGUMENT for a
    fraction out of range or a candidate equal to the alias's own version; NOT_FOUND for a missing version;
    FAILED_PRECONDITION for a candidate on another backbone (a shadow rides the alias's forward). Each change is
    an alias event ("shadow", "canary", "policy") by `principal`. Everything is checked before anything changes."""
    p = _prompt_row(s, prompt)
    a = _alias_row(s, p, alias)
    _check_fraction("shadow_fraction", shadow_fraction, open_low=True)
    _check_fraction("canary_fraction", canary_fraction, open_low=False)
    if policy is not None:
        _check_margin(policy.margin, "policy.margin")
        if policy.min_rows < 0:
            raise InvalidArgument(f"policy.min_rows must be >= 0, got {policy.min_rows}")
    shadow = _candidate(s, p, a, "shadow_version", shadow_version)
    canary = _candidate(s, p, a, "canary_version", canary_version)
    _set_candidate(s, p, a, "shadow", shadow_version, shadow, shadow_fraction, principal)
    _set_candidate(s, p, a, "canary", canary_version, canary, canary_fraction, principal)
    if policy is not None and Policy.from_json(a.policy) != policy:
        a.policy = policy.to_json()
        _event(s, p, a, "policy", a.version.version, a.version.version, principal)
    s.flush()
    return _rollout(a)


def compare(s: Session, prompt: str, alias: str, candidate: int, margin: float | None = None) -> Comparison:
    """The candidate against the alias's version: paired when the candidate has shadow rows with outcomes on the
    alias's current version, else unpaired on each version's all-time totals. `margin` None: the policy's."""
    p = _prompt_row(s, prompt)
    return _compare(s, p, _alias_row(s, p, alias), _version_row(s, p, candidate), margin)


def promote(s: Session, prompt: str, alias: str, candidate: int, principal: str, *, margin: float | None = None,
            force: bool = False) -> tuple[RolloutRecord, Comparison, bool]:
    """Move the alias to `candidate` when the comparison clears (or `force`); FAILED_PRECONDITION with the
    comparison's summary otherwise. A shadow or canary equal to the candidate is cleared. The move goes to the
    alias history (action "promote", with the evidence) and the audit log (detail: the summary). Returns the
    rollout after, the evidence and whether it was forced."""
    p = _prompt_row(s, prompt)
    a = _alias_row(s, p, alias)
    c = _version_row(s, p, candidate)
    comparison = _compare(s, p, a, c, margin)
    forced = not comparison.clears
    if forced and not force:
        raise FailedPrecondition(f"alias {alias!r} of prompt {prompt!r} stays at version {a.version.version}: "
                                 f"{comparison.summary} (force moves it anyway)")
    _move(s, p, a, c, principal, comparison, forced)
    return _rollout(a), comparison, forced


def auto_promote(s: Session, touched: OutcomeReport) -> list[tuple[str, str, Comparison]]:
    """For each alias the outcomes touched whose policy is automatic: promote its shadow (else its canary) when
    at least `min_rows` rows clear the margin, as principal "policy". Returns (prompt, alias, evidence) of the
    moves made."""
    moves = []
    for prompt, alias in touched.touched:
        p = _find_prompt_row(s, prompt)
        a = s.scalar(select(Alias).where(Alias.prompt_id == p.id, Alias.name == alias)) if p is not None else None
        if p is None or a is None:
            continue  # deleted since the rows were served
        policy = Policy.from_json(a.policy)
        candidate = a.shadow_version if a.shadow_version is not None else a.canary_version
        if not policy.auto or candidate is None:
            continue
        comparison = _compare(s, p, a, candidate, policy.margin)
        if comparison.rows >= policy.min_rows and comparison.clears:
            _move(s, p, a, candidate, POLICY_PRINCIPAL, comparison, False)
            moves.append((p.name, a.name, comparison))
    return moves


# ---------------------------------------------------------------- helpers


def _rollout(a: Alias) -> RolloutRecord:
    return RolloutRecord(
        prompt=a.prompt.name, alias=a.name, version=a.version.version,
        shadow_version=a.shadow_version.version if a.shadow_version is not None else 0,
        shadow_fraction=a.shadow_fraction,
        canary_version=a.canary_version.version if a.canary_version is not None else 0,
        canary_fraction=a.canary_fraction, policy=Policy.from_json(a.policy))


def _compare(s: Session, p: Prompt, a: Alias, c: PromptVersion, margin: float | None) -> Comparison:
    m = Policy.from_json(a.policy).margin if margin is None else margin
    _check_margin(m, "margin")
    if c.id == a.version_id:
        raise InvalidArgument(f"version {c.version} is what alias {a.name!r} of prompt {p.name!r} points at "
                              "already: name another version as the candidate")
    primary, candidate = version_name(p.name, a.version.version), version_name(p.name, c.version)
    pairs = outcomes.paired_counts(s, a.version_id, c.id)
    if pairs.n > 0:
        return evidence.paired(primary, candidate, pairs, m)
    return evidence.unpaired(primary, candidate, outcomes.right_of_labelled(s, a.version_id),
                             outcomes.right_of_labelled(s, c.id), m)


def _move(s: Session, p: Prompt, a: Alias, c: PromptVersion, principal: str, comparison: Comparison,
          forced: bool) -> None:
    """The alias moves through the catalog's own alias code (its history row, its candidates cleared), and the
    audit log keeps who promoted it and on what evidence."""
    _set_alias_row(s, p, a.name, c, principal, action="promote", evidence=comparison.to_json())
    record_write(s, principal, "PromoteAlias", f"prompts/{p.name}/aliases/{a.name}",
                 detail=comparison.summary + ("; forced" if forced else ""))


def _candidate(s: Session, p: Prompt, a: Alias, field: str, number: int | None) -> PromptVersion | None:
    """The version a shadow or canary is set to (None: cleared or left alone), checked against the alias's."""
    if not number:
        return None
    c = _version_row(s, p, number)
    if c.id == a.version_id:
        raise InvalidArgument(f"{field}: version {number} is what alias {a.name!r} of prompt {p.name!r} points "
                              "at already; a candidate must be another version")
    if c.backbone_id != a.version.backbone_id or c.backbone_fingerprint != a.version.backbone_fingerprint:
        raise FailedPrecondition(
            f"{field}: version {number} of prompt {p.name!r} is on backbone {c.backbone.name!r}, alias {a.name!r} "
            f"serves version {a.version.version} on {a.version.backbone.name!r}: a candidate rides the same forward, "
            "so it must be on the same backbone")
    return c


def _set_candidate(s: Session, p: Prompt, a: Alias, part: str, number: int | None, version: PromptVersion | None,
                   fraction: float | None, principal: str) -> None:
    """Set an alias's `part` ("shadow" or "canary") version (`number` None: leave it; 0: clear) and fraction,
    with an alias event from the old candidate to the new when anything changed."""
    def state() -> tuple[int, float]:
        v = getattr(a, f"{part}_version")
        return (v.version if v is not None else 0), getattr(a, f"{part}_fraction")

    before = state()
    if number is not None:
        setattr(a, f"{part}_version", version)
    if fraction is not None:
        setattr(a, f"{part}_fraction", fraction)
    after = state()
    if after != before:
        _event(s, p, a, part, before[0], after[0], principal)


def _check_fraction(field: str, value: float | None, *, open_low: bool) -> None:
    if value is None:
        return
    ok = (0.0 < value <= 1.0) if open_low else (0.0 <= value <= 1.0)
    if not ok or math.isnan(value):
        raise InvalidArgument(f"{field} must be in {'(0' if open_low else '[0'}, 1], got {value}")


def _check_margin(value: float, field: str) -> None:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"{field} must be in [0, 1], got {value}")


def _event(s: Session, p: Prompt, a: Alias, action: str, before: int, after: int, principal: str) -> None:
    s.add(AliasEvent(prompt_id=p.id, alias=a.name, from_version=before, to_version=after, at=utcnow(),
                     principal=principal, action=action))
