"""Live evaluation's read models: what an alias's rollout is, what one served row records, and what outcomes
add up to. The bank builds them; the coordinator turns them into messages; `promptbank_domain.evidence`
judges them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from promptbank_domain.catalog import ServedVersion

DEFAULT_MARGIN = 0.02  # a candidate may be this much less accurate (lower end of the 95% interval) and still clear
DEFAULT_MIN_ROWS = 200  # rows with outcomes an automatic promotion waits for
POLICY_PRINCIPAL = "policy"  # who an automatic promotion is recorded as


@dataclass(frozen=True)
class Policy:
    """When an alias moves by itself: `auto` promotes its shadow (else its canary) once the evidence on at least
    `min_rows` rows clears `margin`."""

    auto: bool = False
    margin: float = DEFAULT_MARGIN
    min_rows: int = DEFAULT_MIN_ROWS

    def to_json(self) -> dict[str, object]:
        return {"auto": self.auto, "margin": self.margin, "min_rows": self.min_rows}

    @classmethod
    def from_json(cls, d: dict[str, object] | None) -> Policy:
        d = d or {}
        return cls(auto=bool(d.get("auto", False)), margin=float(str(d.get("margin", DEFAULT_MARGIN))),
                   min_rows=int(str(d.get("min_rows", DEFAULT_MIN_ROWS))))


@dataclass(frozen=True)
class RolloutRecord:
    """An alias with what rides behind it: version numbers (0: none)."""

    prompt: str
    alias: str
    version: int
    shadow_version: int = 0
    shadow_fraction: float = 1.0
    canary_version: int = 0
    canary_fraction: float = 0.0
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True)
class Route:
    """What a prompt reference serves: its version, and when it names an alias, that alias's shadow and canary
    (resolved like the version: immutable, cached until the catalog generation moves)."""

    primary: ServedVersion
    alias: str = ""  # the alias the reference named ("" for a pinned version)
    shadow: ServedVersion | None = None
    shadow_fraction: float = 1.0
    canary: ServedVersion | None = None
    canary_fraction: float = 0.0


@dataclass(frozen=True)
class ServedRow:
    """One answered Classify row, kept for its outcome: who answered (a version row id) with which label index,
    and what the shadow said on the same row (0 / -1: no shadow)."""

    result_id: str
    version_id: int
    label: int
    at: datetime
    alias: str = ""
    canary: bool = False
    shadow_version_id: int = 0
    shadow_label: int = -1


@dataclass(frozen=True)
class Accuracy:
    """Outcomes of one version over a span: rows served, rows with outcomes, rows right, and the confusion table
    {(true label, predicted label): rows}."""

    served: int = 0
    labelled: int = 0
    correct: int = 0
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else 0.0


@dataclass(frozen=True)
class LiveStatsRecord:
    """A version's live accuracy over all time and over the last `window_s` seconds."""

    all_time: Accuracy
    recent: Accuracy
    window_s: float


@dataclass(frozen=True)
class PairedCounts:
    """Rows with outcomes that a primary and a candidate both scored, by who got them right."""

    both: int = 0
    primary_only: int = 0
    candidate_only: int = 0
    neither: int = 0

    @property
    def n(self) -> int:
        return self.both + self.primary_only + self.candidate_only + self.neither


@dataclass(frozen=True)
class OutcomeReport:
    """What a RecordOutcomes batch did, and which aliases' candidates got new evidence (for their policy)."""

    recorded: int = 0
    already: int = 0
    unknown: tuple[str, ...] = ()
    conflicting: tuple[str, ...] = ()
    touched: tuple[tuple[str, str], ...] = ()  # (prompt, alias)
