"""Outcomes of served rows: every answered Classify row is kept (by result id) for a bounded retention, true
labels sent back later are matched to it, and per-version totals (served, labelled, right, confusion) and
paired totals (a primary and its shadow on the same rows) grow as they arrive. Totals outlive the rows, so a
version's all-time accuracy survives retention; the recent window is counted from the rows themselves.

Everything is batched: one INSERT of the rows, one query per chunk of ids to find them, one UPDATE per label
and chunk to claim them, and one upsert per totals table (bank.counters), so a batch of thousands of outcomes
costs a few dozen statements."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from bank import counters, retention
from bank.models import ConfusionCount, PairedCount, Prompt, PromptVersion, VersionOutcome, utcnow
from bank.models import ServedRow as Served
from bank.prompts import _prompt_row
from bank.versions import _version_row
from promptbank_api.errors import InvalidArgument
from promptbank_domain.live import Accuracy, LiveStatsRecord, OutcomeReport, PairedCounts, ServedRow
from promptbank_domain.task import TaskSpec

SHOWN_LABELS = 5  # valid labels an error lists


def record_served(s: Session, rows: Sequence[ServedRow]) -> None:
    """Keep answered rows (one batch from the coordinator's buffer) and count them as served, for the version
    that answered and for the shadow that scored them. A version deleted since (the row's or its shadow's) is
    left out rather than failing the batch."""
    named = sorted({r.version_id for r in rows} | {r.shadow_version_id for r in rows if r.shadow_version_id})
    live = set(s.scalars(select(PromptVersion.id).where(PromptVersion.id.in_(named)))) if named else set()
    kept = [(r, r.shadow_version_id if r.shadow_version_id in live else 0) for r in rows if r.version_id in live]
    if not kept:  # rows of a version deleted since it answered them have nothing to be counted against
        return
    s.execute(insert(Served), [
        {"result_id": r.result_id, "version_id": r.version_id, "label": r.label, "alias": r.alias,
         "canary": r.canary, "shadow_version_id": shadow or None, "shadow_label": r.shadow_label if shadow else -1,
         "at": _naive_utc(r.at)}
        for r, shadow in kept])
    served: Counter[int] = Counter()
    for r, shadow in kept:
        served[r.version_id] += 1
        if shadow:
            served[shadow] += 1
    counters.add(s, VersionOutcome, ("version_id",), {(v,): {"served": n} for v, n in served.items()})


def record_outcomes(s: Session, outcomes: Sequence[tuple[str, str]]) -> OutcomeReport:
    """Match (result id, true label) pairs to their rows. INVALID_ARGUMENT, naming the pair, when a label is not
    one of the row's task's labels (nothing is recorded then). Unknown ids and ids that already have another
    label are reported, not raised; an id sent again with its label changes nothing. An id twice in one batch:
    the first stands, and the second counts as already recorded (same label) or conflicting (another)."""
    rows = _rows(s, list(dict.fromkeys(rid for rid, _ in outcomes)))
    tasks = _tasks(s, {r.version_id for r in rows.values()})
    wanted: dict[str, int] = {}  # result id -> label index of its first occurrence
    repeats: list[tuple[str, int]] = []
    for i, (rid, label) in enumerate(outcomes):
        row = rows.get(rid)
        if row is None:
            continue
        idx = _label_index(tasks[row.version_id][1], label, i, rid)
        if rid in wanted:
            repeats.append((rid, idx))
        else:
            wanted[rid] = idx
    unknown = tuple(dict.fromkeys(rid for rid, _ in outcomes if rid not in rows))
    fresh: dict[int, list[int]] = defaultdict(list)  # label index -> row ids without an outcome yet
    for rid, idx in wanted.items():
        if rows[rid].outcome is None:
            fresh[idx].append(rows[rid].id)
    claimed = _claim(s, fresh)
    if len(claimed) < sum(len(ids) for ids in fresh.values()):  # another writer recorded some meanwhile
        lost = [rid for rid, r in rows.items() if rid in wanted and r.outcome is None and r.id not in claimed]
        rows.update(_rows(s, lost))
    already, conflicting = 0, []
    for rid, idx in [*((rid, idx) for rid, idx in wanted.items() if rows[rid].id not in claimed), *repeats]:
        stored = wanted[rid] if rows[rid].id in claimed else rows[rid].outcome  # the label that stands now
        if idx == stored:
            already += 1
        else:
            conflicting.append(rid)
    touched = _count(s, [r for r in rows.values() if r.id in claimed], wanted, tasks)
    return OutcomeReport(recorded=len(claimed), already=already, unknown=unknown,
                         conflicting=tuple(dict.fromkeys(conflicting)), touched=touched)


def live_stats(s: Session, prompt: str, version: int, window_s: float) -> LiveStatsRecord:
    """A version's accuracy over all time (its totals) and over the last `window_s` seconds (its rows)."""
    p = _prompt_row(s, prompt)
    v = _version_row(s, p, version)
    labels = TaskSpec.from_dict(p.task).labels
    total = s.execute(select(VersionOutcome.served, VersionOutcome.labelled, VersionOutcome.correct)
                      .where(VersionOutcome.version_id == v.id)).first()
    cells = s.execute(select(ConfusionCount.true_label_index, ConfusionCount.predicted_label_index,
                             ConfusionCount.count).where(ConfusionCount.version_id == v.id)).all()
    served, labelled, correct = (int(x) for x in total) if total is not None else (0, 0, 0)
    all_time = Accuracy(served, labelled, correct,
                        {(_name(labels, t), _name(labels, q)): int(n) for t, q, n in cells if n})
    recent = Accuracy()
    if window_s > 0:
        since = utcnow() - timedelta(seconds=window_s)
        groups = [*s.execute(select(Served.outcome, Served.label, func.count())
                             .where(Served.version_id == v.id, Served.at >= since)
                             .group_by(Served.outcome, Served.label)).all(),
                  *s.execute(select(Served.outcome, Served.shadow_label, func.count())
                             .where(Served.shadow_version_id == v.id, Served.at >= since)
                             .group_by(Served.outcome, Served.shadow_label)).all()]
        confusion: Counter[tuple[str, str]] = Counter()
        for truth, predicted, n in groups:
            if truth is not None:
                confusion[(_name(labels, truth), _name(labels, predicted))] += int(n)
        recent = Accuracy(served=sum(int(n) for *_, n in groups), labelled=sum(confusion.values()),
                          correct=sum(int(n) for t, q, n in groups if t is not None and t == q),
                          confusion=dict(confusion))
    return LiveStatsRecord(all_time=all_time, recent=recent, window_s=window_s)


def paired_counts(s: Session, primary_version_id: int, candidate_version_id: int) -> PairedCounts:
    """Rows with outcomes that `candidate` scored as a shadow of `primary`, by who got them right."""
    row = s.execute(select(PairedCount.both, PairedCount.primary_only, PairedCount.candidate_only,
                           PairedCount.neither)
                    .where(PairedCount.primary_version_id == primary_version_id,
                           PairedCount.candidate_version_id == candidate_version_id)).first()
    return PairedCounts(*(int(x) for x in row)) if row is not None else PairedCounts()


def right_of_labelled(s: Session, version_id: int) -> tuple[int, int]:
    """A version's all-time (rows right, rows with outcomes): what an unpaired comparison rests on."""
    row = s.execute(select(VersionOutcome.correct, VersionOutcome.labelled)
                    .where(VersionOutcome.version_id == version_id)).first()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def prune(s: Session, *, keep_days: float, keep_rows: int) -> int:
    """Delete served rows older than `keep_days` and all but about the newest `keep_rows` (0: no bound); their
    ids then read as unknown. Totals stay. Returns how many rows went."""
    return retention.prune(s, Served, keep_days=keep_days, keep_rows=keep_rows)


# ---------------------------------------------------------------- helpers


class _Kept(NamedTuple):
    """What matching an outcome needs of a served row."""

    id: int
    result_id: str
    version_id: int
    label: int
    shadow_version_id: int | None
    shadow_label: int
    outcome: int | None
    alias: str
    canary: bool


def _rows(s: Session, result_ids: Sequence[str]) -> dict[str, _Kept]:
    cols = [getattr(Served, f) for f in _Kept._fields]
    out: dict[str, _Kept] = {}
    for chunk in counters.chunks(result_ids):
        for r in s.execute(select(*cols).where(Served.result_id.in_(chunk))).all():
            out[r.result_id] = _Kept(*r)
    return out


def _tasks(s: Session, version_ids: set[int]) -> dict[int, tuple[str, tuple[str, ...]]]:
    """version row id -> (prompt name, its task's labels)."""
    rows = s.execute(select(PromptVersion.id, Prompt.name, Prompt.task).join(Prompt, PromptVersion.prompt_id == Prompt.id)
                     .where(PromptVersion.id.in_(sorted(version_ids)))).all() if version_ids else []
    return {vid: (name, TaskSpec.from_dict(task).labels) for vid, name, task in rows}


def _label_index(labels: tuple[str, ...], label: str, i: int, rid: str) -> int:
    try:
        return labels.index(label)
    except ValueError:
        shown = ", ".join(repr(x) for x in labels[:SHOWN_LABELS]) + (", ..." if len(labels) > SHOWN_LABELS else "")
        raise InvalidArgument(f"outcomes[{i}] (result id {rid!r}): label {label!r} is not one of its task's "
                              f"labels ({shown}); nothing was recorded") from None


def _claim(s: Session, fresh: dict[int, list[int]]) -> set[int]:
    """Set the outcome on rows that have none, one UPDATE per label and chunk; the ids this call set (a row
    another writer set first is not among them: `outcome IS NULL` is checked under the row's lock)."""
    now = utcnow()
    claimed: set[int] = set()
    for idx, ids in sorted(fresh.items()):
        for chunk in counters.chunks(sorted(ids)):
            stmt = (update(Served).where(Served.id.in_(chunk), Served.outcome.is_(None))
                    .values(outcome=idx, outcome_at=now).returning(Served.id))
            claimed.update(s.execute(stmt, execution_options={"synchronize_session": False}).scalars())
    return claimed


def _count(s: Session, rows: list[_Kept], wanted: dict[str, int],
           tasks: dict[int, tuple[str, tuple[str, ...]]]) -> tuple[tuple[str, str], ...]:
    """Add newly labelled rows to the totals; the (prompt, alias) pairs whose candidate got outcomes."""
    versions: dict[tuple[int, ...], Counter[str]] = defaultdict(Counter)
    cells: dict[tuple[int, ...], Counter[str]] = defaultdict(Counter)
    pairs: dict[tuple[int, ...], Counter[str]] = defaultdict(Counter)
    touched: dict[tuple[str, str], None] = {}
    for r in rows:
        truth = wanted[r.result_id]
        right = r.label == truth
        versions[(r.version_id,)].update(labelled=1, correct=int(right))
        cells[(r.version_id, truth, r.label)]["count"] += 1
        if r.shadow_version_id is not None and r.shadow_label >= 0:
            shadow_right = r.shadow_label == truth
            versions[(r.shadow_version_id,)].update(labelled=1, correct=int(shadow_right))
            cells[(r.shadow_version_id, truth, r.shadow_label)]["count"] += 1
            cell = ("both" if shadow_right else "primary_only") if right else ("candidate_only" if shadow_right
                                                                              else "neither")
            pairs[(r.version_id, r.shadow_version_id)][cell] += 1
        if r.alias and (r.canary or r.shadow_version_id is not None):
            touched[(tasks[r.version_id][0], r.alias)] = None
    counters.add(s, VersionOutcome, ("version_id",), versions)
    counters.add(s, ConfusionCount, ("version_id", "true_label_index", "predicted_label_index"), cells)
    counters.add(s, PairedCount, ("primary_version_id", "candidate_version_id"), pairs)
    return tuple(touched)


def _name(labels: tuple[str, ...], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else f"#{index}"


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo is not None else at
