"""Live evaluation in the Python SDK's `Client`: outcomes of served rows sent back by result id, and an alias's
rollout (shadow, canary, promotion policy), comparison and promotion.

A mixin, as promptbank/admin_calls.py is: `Client` gives it its channel and deadline. Aliases are named
`task@alias` or `prompts/{p}/aliases/{a}`; versions `task/versions/N`, `prompts/{p}/versions/{n}`, or a
number `N` (a version of the alias's own prompt). Both are turned into resource names here, so a wrong one is a
ValueError naming it before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask

from promptbank.checks import count, fraction
from promptbank_api.names import NAME_CHARS, NAME_RE
from promptbank_api.v1 import live_pb2 as lv
from promptbank_api.v1 import live_pb2_grpc as lv_grpc

OUTCOMES_PER_CALL = 10_000  # RecordOutcomes takes 1..10000 outcomes a call
_ALIAS_RE = re.compile(r"^(?:prompts/(?P<p1>[^/@]+)/aliases/(?P<a1>[^/@]+)(?:/rollout)?|(?P<p2>[^/@]+)@(?P<a2>[^/@]+))$")
_VERSION_RE = re.compile(r"^(?:(?:prompts/)?(?P<p>[^/@]+)/versions/)?(?P<n>\d+)$")


@dataclass(frozen=True)
class AliasRef:
    """An alias as the API names it."""

    prompt: str
    alias: str

    @property
    def name(self) -> str:
        return f"prompts/{self.prompt}/aliases/{self.alias}"

    @property
    def rollout(self) -> str:
        return f"{self.name}/rollout"

    def __str__(self) -> str:
        return f"{self.prompt}@{self.alias}"


def _valid(kind: str, value: str) -> bool:
    return bool(NAME_RE.match(value)) and len(value) <= NAME_CHARS.get(kind, 128)


def alias_ref(ref: Any, what: str = "alias") -> AliasRef:
    """`task@alias` or `prompts/{p}/aliases/{a}` (a trailing `/rollout` allowed) -> AliasRef."""
    m = _ALIAS_RE.match(ref) if isinstance(ref, str) else None
    if m is None or not _valid("prompt", m["p1"] or m["p2"]) or not _valid("alias", m["a1"] or m["a2"]):
        raise ValueError(f"{what} must be 'task@alias' or 'prompts/TASK/aliases/ALIAS', got {ref!r}")
    return AliasRef(m["p1"] or m["p2"], m["a1"] or m["a2"])


def version_ref(ref: Any, alias: AliasRef, what: str = "version") -> str:
    """A version of the alias's prompt as `prompts/{p}/versions/{n}`: from a number, `task/versions/N` or its
    resource name. A version of another prompt is refused here (an alias only ever points within its prompt)."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        ref = str(ref)
    m = _VERSION_RE.match(ref) if isinstance(ref, str) else None
    if m is None or int(m["n"]) < 1:
        raise ValueError(f"{what} must name a version: N, 'task/versions/N' or 'prompts/TASK/versions/N', got "
                         f"{ref!r}")
    prompt = m["p"] or alias.prompt
    if prompt != alias.prompt:
        raise ValueError(f"{what} {ref!r} is a version of {prompt!r}, not of {alias.prompt!r} (the prompt of "
                         f"{alias})")
    return f"prompts/{prompt}/versions/{int(m['n'])}"


def _margin(value: float | None) -> float | None:
    return None if value is None else fraction(value, "margin")


def routing_keys(value: str | Sequence[str] | None, rows: int, what: str) -> list[str]:
    """Each row's routing key: none, one for every row (a string), or one per row (a list as long as the rows)."""
    if value is None:
        return [""] * rows
    if isinstance(value, str):
        return [value] * rows
    if isinstance(value, bytes):
        raise TypeError(f"{what}: routing_key must be a string or a list of strings, got bytes {value!r}")
    keys = list(value)
    bad = [k for k in keys if not isinstance(k, str)]
    if bad:
        raise TypeError(f"{what}: routing_key must hold strings, got {bad[0]!r}")
    if len(keys) != rows:
        raise ValueError(f"{what}: routing_key has {len(keys)} keys for {rows} rows; give one per row, or one "
                         f"string for all")
    return keys


@dataclass(frozen=True)
class OutcomeSummary:
    """What `record_outcomes` did, over all its calls."""

    recorded: int = 0  # outcomes newly recorded
    already: int = 0  # sent before with the same label: nothing changed
    unknown: tuple[str, ...] = ()  # ids the server does not know (never issued, or past its retention)
    conflicting: tuple[str, ...] = ()  # ids that already had a different label (the first stands)
    promoted: tuple[str, ...] = ()  # aliases their automatic policy moved, `prompts/{p}/aliases/{a}`


def outcome_pairs(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(result id, label) pairs from a mapping or an iterable of pairs, each a pair of non-empty strings."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    if isinstance(items, str | bytes):
        raise TypeError(f"record_outcomes takes (result_id, label) pairs or a mapping, not the string {items!r}")
    out = []
    for i, pair in enumerate(items):
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"record_outcomes takes (result_id, label) pairs; item {i} is {pair!r}")
        rid, label = pair
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"record_outcomes: item {i}'s result id must be a non-empty string, got {rid!r}")
        if not isinstance(label, str) or not label:
            raise ValueError(f"record_outcomes: item {i} (result id {rid!r}) has no label: got {label!r}")
        out.append((rid, label))
    return out


class LiveCalls:
    """Outcomes (reader role), rollouts and comparisons (read: reader; change: admin) and promotion (admin)."""

    live: lv_grpc.LiveEvaluationStub
    timeout: float

    # ------------------------------------------------------------ outcomes

    def record_outcomes(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]],
                        chunk: int = OUTCOMES_PER_CALL) -> OutcomeSummary:
        """Send true labels of classified rows: (Prediction.id, label) pairs, or a mapping id -> label, in calls
        of at most `chunk` (<= 10,000). Idempotent per id (retried on UNAVAILABLE): sending an outcome again
        changes nothing. A label that is not one of the row's task's labels fails its call (INVALID_ARGUMENT,
        nothing of that call recorded; calls before it stand)."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= OUTCOMES_PER_CALL:
            raise ValueError(f"chunk must be a whole number in 1..{OUTCOMES_PER_CALL}, got {chunk!r}")
        todo = outcome_pairs(pairs)
        if not todo:
            return OutcomeSummary()
        recorded = already = 0
        unknown: list[str] = []
        conflicting: list[str] = []
        promoted: list[str] = []
        for start in range(0, len(todo), chunk):
            req = lv.RecordOutcomesRequest(outcomes=[lv.Outcome(result_id=r, label=lab)
                                                     for r, lab in todo[start:start + chunk]])
            resp = self.live.RecordOutcomes(req, timeout=self.timeout)
            recorded += resp.recorded
            already += resp.already_recorded
            unknown += resp.unknown_ids
            conflicting += resp.conflicting_ids
            promoted += [a for a in resp.promoted if a not in promoted]
        return OutcomeSummary(recorded, already, tuple(unknown), tuple(conflicting), tuple(promoted))

    # ------------------------------------------------------------ rollouts

    def rollout(self, alias: str) -> lv.Rollout:
        """An alias's version, shadow, canary and policy, with the evidence gathered so far."""
        ref = alias_ref(alias)
        return self.live.GetRollout(lv.GetRolloutRequest(name=ref.rollout), timeout=self.timeout)

    def _update(self, ref: AliasRef, paths: list[str], **fields: Any) -> lv.Rollout:
        req = lv.UpdateRolloutRequest(rollout=lv.Rollout(name=ref.rollout, **fields),
                                      update_mask=FieldMask(paths=paths))
        return self.live.UpdateRollout(req, timeout=self.timeout)

    def set_shadow(self, alias: str, version: str | int, fraction: float | None = None) -> lv.Rollout:
        """Score `version` on the alias's rows in the same forward, never answering with it; on a share
        `fraction` in (0, 1] of them (None: leave the share as it is; 1 for a new shadow)."""
        ref = alias_ref(alias)
        fields: dict[str, Any] = {"shadow_version": version_ref(version, ref)}
        if fraction is not None:
            fields["shadow_fraction"] = _fraction(fraction, "fraction", low_open=True)
        return self._update(ref, list(fields), **fields)

    def clear_shadow(self, alias: str) -> lv.Rollout:
        return self._update(alias_ref(alias), ["shadow_version"], shadow_version="")

    def set_canary(self, alias: str, version: str | int, fraction: float) -> lv.Rollout:
        """Answer a share `fraction` in [0, 1] of the alias's rows with `version`, sticky per routing key."""
        ref = alias_ref(alias)
        return self._update(ref, ["canary_version", "canary_fraction"], canary_version=version_ref(version, ref),
                            canary_fraction=_fraction(fraction, "fraction"))

    def clear_canary(self, alias: str) -> lv.Rollout:
        return self._update(alias_ref(alias), ["canary_version", "canary_fraction"], canary_version="",
                            canary_fraction=0.0)

    def set_policy(self, alias: str, auto: bool, margin: float | None = None,
                   min_rows: int | None = None) -> lv.Rollout:
        """Whether the alias promotes its shadow (else its canary) by itself once `min_rows` rows with outcomes
        clear `margin`. `margin` / `min_rows` None keep the alias's current values."""
        ref = alias_ref(alias)
        if not isinstance(auto, bool):
            raise TypeError(f"auto must be True or False, got {auto!r}")
        margin = _margin(margin)
        rows = None if min_rows is None else count(min_rows, "min_rows")
        if margin is None or rows is None:
            now = self.rollout(alias).policy
            margin = now.margin if margin is None else margin
            rows = now.min_rows if rows is None else rows
        policy = lv.PromotionPolicy(auto=auto, margin=margin, min_rows=rows)
        return self._update(ref, ["policy"], policy=policy)

    # ------------------------------------------------------------ comparison and promotion

    def compare(self, alias: str, candidate: str | int, margin: float | None = None) -> lv.Comparison:
        """`candidate` against the alias's version on the outcomes so far (paired when it has been the alias's
        shadow); `margin` None: the alias's policy margin. `clears` says whether it is not worse beyond it."""
        ref = alias_ref(alias)
        req = lv.CompareVersionsRequest(alias=ref.name, candidate=version_ref(candidate, ref, "candidate"),
                                        margin=_margin(margin))
        return self.live.CompareVersions(req, timeout=self.timeout)

    def promote(self, alias: str, candidate: str | int, margin: float | None = None,
                force: bool = False) -> lv.Promotion:
        """Move the alias to `candidate` when the evidence clears the margin, or whatever it says with `force`
        (the evidence is recorded either way). Refused with `FailedPrecondition`, naming the numbers, otherwise.
        Not retried: a repeat after a move that committed would compare the version with itself."""
        ref = alias_ref(alias)
        req = lv.PromoteAliasRequest(alias=ref.name, candidate=version_ref(candidate, ref, "candidate"),
                                     margin=_margin(margin), force=bool(force))
        return self.live.PromoteAlias(req, timeout=self.timeout)


_fraction = fraction  # the methods' own `fraction` argument shadows the check's name
