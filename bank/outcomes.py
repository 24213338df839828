"""Outcomes of served rows: every answered Classify row is kept (by result id) for a bounded retention, true
labels sent back later are matched to it, and per-version totals (served, labelled, right, confusion) and
paired totals (a primary and its shadow on the same rows) grow as they arrive. Totals outlive the rows, so a
version's all-time accuracy survives retention; the recent window is counted from the rows themselves."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from promptbank_domain.live import LiveStatsRecord, OutcomeReport, PairedCounts, ServedRow


def record_served(s: Session, rows: Sequence[ServedRow]) -> None:
    """Keep answered rows (one batch from the coordinator's buffer) and count them as served, for the version
    that answered and for the shadow that scored them."""
    raise NotImplementedError


def record_outcomes(s: Session, outcomes: Sequence[tuple[str, str]]) -> OutcomeReport:
    """Match (result id, true label) pairs to their rows. INVALID_ARGUMENT, naming the pair, when a label is not
    one of the row's task's labels (nothing is recorded then). Unknown ids and ids that already have another
    label are reported, not raised; an id sent again with its label changes nothing."""
    raise NotImplementedError


def live_stats(s: Session, prompt: str, version: int, window_s: float) -> LiveStatsRecord:
    """A version's accuracy over all time (its totals) and over the last `window_s` seconds (its rows)."""
    raise NotImplementedError


def paired_counts(s: Session, primary_version_id: int, candidate_version_id: int) -> PairedCounts:
    """Rows with outcomes that `candidate` scored as a shadow of `primary`, by who got them right."""
    raise NotImplementedError


def prune(s: Session, *, keep_days: float, keep_rows: int) -> int:
    """Delete served rows older than `keep_days` and all but about the newest `keep_rows` (0: no bound); their
    ids then read as unknown. Totals stay. Returns how many rows went."""
    raise NotImplementedError
