"""Live evaluation in the bank, on a real SQLite file and a real PostgreSQL: served rows and outcomes become
per-version totals, confusion and paired counts; outcomes are idempotent per result id; the recent window and
retention; rollouts (shadow, canary, policy) behind an alias; comparison, promotion and the automatic policy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bank import audit, catalog
from bank.codec import encode_prompt
from bank.db import make_engine, make_sessionmaker
from bank.models import ServedRow as ServedRowRow
from bank.models import utcnow
from coordinator import convert
from coordinator.tokens_service import audit_to_proto
from promptbank_api.errors import FailedPrecondition, InvalidArgument, NotFound
from promptbank_domain import evidence
from promptbank_domain.live import POLICY_PRINCIPAL, OutcomeReport, Policy, ServedRow
from promptbank_domain.task import TaskSpec
from tests.pg_fixtures import BACKENDS, fresh_db_url

LABELS = ("neg", "pos", "neu")
NEG, POS, NEU = 0, 1, 2


@pytest.fixture(params=BACKENDS)
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fresh_db_url(request, request.param, tmp_path))
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture()
def ids(sessions: sessionmaker[Session]) -> dict[int, int]:
    return seed(sessions)


@pytest.fixture()
def pg_sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def seed(sessions: sessionmaker[Session]) -> dict[int, int]:
    """Prompt `sent` with versions 1-3 on backbone bb and 4 on bb2; alias `prod` -> 1. Version number -> row id."""
    with sessions() as s:
        for name, fp in (("bb", "f" * 64), ("bb2", "e" * 64)):
            catalog.upsert_backbone(s, name, model="m", revision="", architecture="encoder", hidden_size=4,
                                    fingerprint=fp)
        catalog.create_prompt(s, "sent", TaskSpec(labels=LABELS))
        for n, bb in enumerate(("bb", "bb", "bb", "bb2"), start=1):
            catalog.add_version(s, "sent", bb, encode_prompt(torch.randn(2, 4)), aliases=["prod"] if n == 1 else [])
        s.commit()
        return {n: catalog.resolve_served(s, f"sent/versions/{n}").id for n in range(1, 5)}


def serve(s: Session, prefix: str, labels: list[int], version_id: int, *, shadow_id: int = 0,
          shadow_labels: list[int] | None = None, canary: bool = False, ago: timedelta = timedelta(0),
          alias: str = "prod") -> list[str]:
    rids = [f"{prefix}{i}" for i in range(len(labels))]
    catalog.record_served(s, [
        ServedRow(result_id=rid, version_id=version_id, label=label, at=utcnow() - ago, alias=alias, canary=canary,
                  shadow_version_id=shadow_id, shadow_label=shadow_labels[i] if shadow_labels else -1)
        for i, (rid, label) in enumerate(zip(rids, labels, strict=True))])
    return rids


def test_outcomes_become_totals_and_confusion(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    with sessions() as s:
        rids = serve(s, "r", [POS] * 6 + [NEG] * 4, ids[1])
        truth = [POS] * 4 + [NEG] * 2 + [NEG] * 2 + [POS]  # rows 0-8; row 9 never gets an outcome
        report = catalog.record_outcomes(s, [(rid, LABELS[t]) for rid, t in zip(rids, truth, strict=False)])
        s.commit()
    assert report == OutcomeReport(recorded=9)  # no shadow or canary: no alias touched
    with sessions() as s:
        stats = catalog.live_stats(s, "sent", 1, window_s=3600)
        other = catalog.live_stats(s, "sent", 2, window_s=3600)
    a = stats.all_time
    assert (a.served, a.labelled, a.correct) == (10, 9, 6)
    assert a.confusion == {("pos", "pos"): 4, ("neg", "pos"): 2, ("neg", "neg"): 2, ("pos", "neg"): 1}
    assert stats.recent == a and stats.window_s == 3600  # every row is recent
    low, high = evidence.wilson(a.correct, a.labelled)
    assert a.accuracy == pytest.approx(6 / 9)
    assert 0.0 < low < a.accuracy < high < 1.0 and (low, high) == pytest.approx((0.3542, 0.8794), abs=1e-4)
    assert (other.all_time.served, other.recent.served) == (0, 0)  # a version never served has empty totals
    with sessions() as s, pytest.raises(NotFound, match="version 9 of prompt 'sent'"):
        catalog.live_stats(s, "sent", 9, window_s=60)


def test_outcomes_are_idempotent_per_result_id(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    with sessions() as s:
        serve(s, "r", [POS] * 6, ids[1])
        first = catalog.record_outcomes(s, [("r0", "pos"), ("r1", "neg")])
        s.commit()
    assert (first.recorded, first.already, first.conflicting, first.unknown) == (2, 0, (), ())
    with sessions() as s:
        again = catalog.record_outcomes(s, [("r0", "pos"), ("r1", "pos"), ("nope", "pos")])
        # inside one batch: the first occurrence stands; the same label again is already there, another conflicts
        dups = catalog.record_outcomes(s, [("r2", "pos"), ("r2", "pos"), ("r3", "neu"), ("r3", "pos")])
        s.commit()
    assert (again.recorded, again.already, again.conflicting, again.unknown) == (0, 1, ("r1",), ("nope",))
    assert (dups.recorded, dups.already, dups.conflicting) == (2, 1, ("r3",))
    with sessions() as s:
        before = catalog.live_stats(s, "sent", 1, window_s=3600).all_time
        with pytest.raises(InvalidArgument) as err:
            catalog.record_outcomes(s, [("r4", "pos"), ("r5", "maybe")])
        after = catalog.live_stats(s, "sent", 1, window_s=3600).all_time
        s.rollback()
    message = str(err.value)
    assert "outcomes[1]" in message and "'r5'" in message and "'maybe'" in message and "'neg'" in message
    assert before == after and (after.labelled, after.correct) == (4, 2)  # r0, r2 right; r1 neg, r3 neu wrong
    with sessions() as s:  # the refused batch recorded nothing: r4 is still open
        assert catalog.record_outcomes(s, [("r4", "pos")]).recorded == 1
        s.commit()


def test_recent_window_counts_only_recent_rows(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    with sessions() as s:
        old = serve(s, "old", [POS] * 4, ids[1], ago=timedelta(hours=2))
        new = serve(s, "new", [NEG] * 3, ids[1])
        catalog.record_outcomes(s, [(r, "pos") for r in old] + [(r, "pos") for r in new])
        s.commit()
        stats = catalog.live_stats(s, "sent", 1, window_s=3600)
    assert (stats.all_time.served, stats.all_time.labelled, stats.all_time.correct) == (7, 7, 4)
    assert (stats.recent.served, stats.recent.labelled, stats.recent.correct) == (3, 3, 0)
    assert stats.recent.confusion == {("pos", "neg"): 3}


def test_prune_forgets_rows_but_keeps_totals(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    with sessions() as s:
        old = serve(s, "old", [POS] * 5, ids[1], ago=timedelta(days=10))
        new = serve(s, "new", [POS] * 10, ids[1])
        catalog.record_outcomes(s, [(old[0], "pos")])
        s.commit()
        assert catalog.prune_served_rows(s, keep_days=5, keep_rows=0) == 5
        assert catalog.prune_served_rows(s, keep_days=5, keep_rows=3) == 7  # all but about the newest 3
        s.commit()
        left = s.scalars(select(ServedRowRow.result_id)).all()
        report = catalog.record_outcomes(s, [(old[1], "pos"), (new[0], "pos"), (new[-1], "pos")])
        s.commit()
        stats = catalog.live_stats(s, "sent", 1, window_s=86400 * 30)
    assert sorted(left) == sorted(new[-3:])
    assert report.unknown == (old[1], new[0]) and report.recorded == 1
    assert (stats.all_time.served, stats.all_time.labelled) == (15, 2)  # totals outlive the rows
    assert (stats.recent.served, stats.recent.labelled) == (3, 1)


def test_rollouts_set_validate_clear_and_route(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    with sessions() as s:
        gen = catalog.generation(s)
        r = catalog.update_rollout(s, "sent", "prod", "ann", shadow_version=2, shadow_fraction=0.5, canary_version=3,
                                   canary_fraction=0.1, policy=Policy(auto=True, margin=0.05, min_rows=10))
        s.commit()
        assert catalog.generation(s) > gen  # cached routes are dropped
    assert (r.version, r.shadow_version, r.shadow_fraction, r.canary_version, r.canary_fraction) == (1, 2, 0.5, 3, 0.1)
    assert r.policy == Policy(auto=True, margin=0.05, min_rows=10)
    with sessions() as s:
        assert catalog.get_rollout(s, "sent", "prod") == r
        route = catalog.resolve_route(s, "sent@prod")
        pinned = catalog.resolve_route(s, "sent/versions/1")
    assert route.primary.id == ids[1] and route.alias == "prod"
    assert route.shadow is not None and route.shadow.id == ids[2] and route.shadow_fraction == 0.5
    assert route.canary is not None and route.canary.id == ids[3] and route.canary_fraction == 0.1
    assert pinned.primary.id == ids[1] and (pinned.alias, pinned.shadow, pinned.canary) == ("", None, None)

    bad = [
        ({"shadow_fraction": 0.0}, InvalidArgument, r"shadow_fraction must be in \(0, 1\], got 0.0"),
        ({"canary_fraction": 1.5}, InvalidArgument, r"canary_fraction must be in \[0, 1\], got 1.5"),
        ({"shadow_version": 1}, InvalidArgument, "shadow_version: version 1 is what alias 'prod'"),
        ({"canary_version": 9}, NotFound, "version 9 of prompt 'sent' not found"),
        ({"shadow_version": 4, "shadow_fraction": 0.2}, FailedPrecondition, "on backbone 'bb2'"),
        ({"policy": Policy(margin=2.0)}, InvalidArgument, "policy.margin must be in"),
    ]
    for kwargs, error, match in bad:
        with sessions() as s, pytest.raises(error, match=match):
            catalog.update_rollout(s, "sent", "prod", "ann", **kwargs)  # type: ignore[arg-type]
    with sessions() as s:
        assert catalog.get_rollout(s, "sent", "prod") == r  # nothing changed
        cleared = catalog.update_rollout(s, "sent", "prod", "bob", shadow_version=0)
        s.commit()
        events = catalog.alias_history(s, "sent", 0, 10)
    assert (cleared.shadow_version, cleared.canary_version) == (0, 3)
    prod = [(e.action, e.from_version, e.to_version, e.principal) for e in events if e.alias == "prod"]
    assert prod[:4] == [("shadow", 2, 0, "bob"), ("policy", 1, 1, "ann"), ("canary", 0, 3, "ann"),
                        ("shadow", 0, 2, "ann")]
    assert prod[4] == ("move", 0, 1, "")


def test_set_alias_keeps_candidates_but_not_itself(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    with sessions() as s:
        catalog.update_rollout(s, "sent", "prod", "ann", shadow_version=2, canary_version=3, canary_fraction=0.2)
        catalog.set_alias(s, "sent", "prod", 2, "ann")
        s.commit()
        r = catalog.get_rollout(s, "sent", "prod")
    assert (r.version, r.shadow_version, r.canary_version, r.canary_fraction) == (2, 0, 3, 0.2)
    with sessions() as s:  # a deleted candidate leaves the alias without it (ON DELETE SET NULL)
        catalog.delete_version(s, "sent/versions/3", force=False)
        s.commit()
        assert catalog.get_rollout(s, "sent", "prod").canary_version == 0
        # rows buffered before the delete: the gone version's are dropped, a gone shadow is left off the row
        serve(s, "gone", [POS], ids[3])
        serve(s, "kept", [POS], ids[2], shadow_id=ids[3], shadow_labels=[NEG])
        s.commit()
        rows = s.execute(select(ServedRowRow.result_id, ServedRowRow.shadow_version_id, ServedRowRow.shadow_label)).all()
        assert [tuple(r) for r in rows] == [("kept0", None, -1)]
        assert catalog.live_stats(s, "sent", 2, window_s=60).all_time.served == 1


def shadowed(s: Session, ids: dict[int, int], cells: dict[str, int], prefix: str = "p") -> OutcomeReport:
    """Rows the alias's version 1 answered and version 2 shadowed, with outcomes, in the given paired cells."""
    right = {"both": (POS, POS), "primary_only": (POS, NEG), "candidate_only": (NEG, POS), "neither": (NEG, NEG)}
    pairs = [right[c] for c, n in cells.items() for _ in range(n)]
    rids = serve(s, prefix, [p for p, _ in pairs], ids[1], shadow_id=ids[2], shadow_labels=[c for _, c in pairs])
    return catalog.record_outcomes(s, [(rid, "pos") for rid in rids])


def test_compare_paired_with_a_shadow_and_unpaired_with_a_canary(sessions: sessionmaker[Session],
                                                                 ids: dict[int, int]) -> None:
    with sessions() as s:
        catalog.update_rollout(s, "sent", "prod", "ann", shadow_version=2, canary_version=3, canary_fraction=0.5)
        report = shadowed(s, ids, {"both": 30, "primary_only": 5, "candidate_only": 10, "neither": 5})
        canary = serve(s, "c", [POS] * 16 + [NEG] * 4, ids[3], canary=True)
        report2 = catalog.record_outcomes(s, [(r, "pos") for r in canary])
        s.commit()
        paired = catalog.compare(s, "sent", "prod", 2)
        unpaired = catalog.compare(s, "sent", "prod", 3, margin=0.1)
        counts = catalog.paired_counts(s, ids[1], ids[2])
        behind = catalog.rollout_evidence(s, "sent", "prod")  # what GetRollout shows: by the policy's margin
        shadow_stats = catalog.live_stats(s, "sent", 2, window_s=3600).all_time
    assert report.touched == (("sent", "prod"),) and report2.touched == (("sent", "prod"),)
    assert (counts.both, counts.primary_only, counts.candidate_only, counts.neither) == (30, 5, 10, 5)
    assert paired == evidence.paired("prompts/sent/versions/1", "prompts/sent/versions/2", counts, 0.02)
    assert paired.method == "paired" and paired.rows == 50
    # the shadow's own live accuracy counts the rows it scored
    assert (shadow_stats.served, shadow_stats.labelled, shadow_stats.correct) == (50, 50, 40)
    assert unpaired == evidence.unpaired("prompts/sent/versions/1", "prompts/sent/versions/3", (35, 50), (16, 20), 0.1)
    assert unpaired.method == "unpaired" and (unpaired.rows, unpaired.primary_rows) == (20, 50)
    assert behind == (paired, evidence.unpaired(unpaired.primary_version, unpaired.candidate_version, (35, 50),
                                                (16, 20), 0.02))
    with sessions() as s, pytest.raises(InvalidArgument, match="version 1 is what alias 'prod'"):
        catalog.compare(s, "sent", "prod", 1)


def test_promote_refused_cleared_and_forced(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    with sessions() as s:
        catalog.update_rollout(s, "sent", "prod", "ann", shadow_version=2, canary_version=3, canary_fraction=0.3)
        shadowed(s, ids, {"both": 40, "primary_only": 30, "candidate_only": 2, "neither": 8})  # 2 is much worse
        s.commit()
    with sessions() as s:
        with pytest.raises(FailedPrecondition, match=r"stays at version 1: .*does not clear the margin -0.02"):
            catalog.promote(s, "sent", "prod", 2, "ann")
        s.rollback()
        assert catalog.resolve(s, "sent@prod").version == 1
        assert [e.action for e in catalog.alias_history(s, "sent", 0, 10)].count("promote") == 0
        # a generous margin clears it: the alias moves, the shadow (the candidate) is cleared, the canary stays
        rollout, comparison, forced = catalog.promote(s, "sent", "prod", 2, "ann", margin=0.5)
        s.commit()
        top = catalog.alias_history(s, "sent", 0, 1)[0]
        logged = audit.list_events(s, 10, rpc="PromoteAlias")
    assert comparison.clears and not forced and comparison.method == "paired"
    assert (rollout.version, rollout.shadow_version, rollout.canary_version) == (2, 0, 3)
    assert (top.action, top.from_version, top.to_version, top.principal) == ("promote", 1, 2, "ann")
    assert top.evidence == comparison.to_json()
    assert [(e.principal, e.resource, e.detail) for e in logged] == [("ann", "prompts/sent/aliases/prod",
                                                                      comparison.summary)]
    message = convert.alias_event_to_proto(top)  # what ListAliasHistory sends
    assert (message.action, message.evidence.method, message.evidence.rows) == ("promote", "paired", 80)
    assert message.evidence.clears and message.evidence.summary == comparison.summary
    assert audit_to_proto(logged[0]).detail == comparison.summary  # what ListAuditEvents sends
    with sessions() as s:  # the canary has no outcomes: nothing to judge by, so only force moves it
        with pytest.raises(FailedPrecondition, match="no outcomes yet"):
            catalog.promote(s, "sent", "prod", 3, "bob")
        s.rollback()
        rollout, comparison, forced = catalog.promote(s, "sent", "prod", 3, "bob", force=True)
        s.commit()
        logged = audit.list_events(s, 10, rpc="PromoteAlias")
    assert forced and comparison.method == "none" and (rollout.version, rollout.canary_version) == (3, 0)
    assert logged[0].principal == "bob" and logged[0].detail == comparison.summary + "; forced"


def test_auto_promote_follows_the_policy(sessions: sessionmaker[Session], ids: dict[int, int]) -> None:
    good = {"both": 20, "primary_only": 1, "candidate_only": 5, "neither": 4}  # 30 rows; the shadow is better
    with sessions() as s:
        catalog.update_rollout(s, "sent", "prod", "ann", shadow_version=2, policy=Policy(auto=False, min_rows=10))
        report = shadowed(s, ids, good, prefix="a")
        assert catalog.auto_promote(s, report) == []  # not automatic
        catalog.update_rollout(s, "sent", "prod", "ann", policy=Policy(auto=True, margin=0.02, min_rows=100))
        assert catalog.auto_promote(s, report) == []  # 30 rows < 100
        catalog.update_rollout(s, "sent", "prod", "ann", policy=Policy(auto=True, margin=0.02, min_rows=60))
        report = shadowed(s, ids, good, prefix="b")  # 60 rows now
        moves = catalog.auto_promote(s, report)
        s.commit()
        r = catalog.get_rollout(s, "sent", "prod")
        top = catalog.alias_history(s, "sent", 0, 1)[0]
    assert [(p, a, c.rows) for p, a, c in moves] == [("sent", "prod", 60)] and moves[0][2].clears
    assert (r.version, r.shadow_version) == (2, 0)
    assert (top.action, top.principal, top.to_version) == ("promote", POLICY_PRINCIPAL, 2)


def test_concurrent_writers_add_up(pg_sessions: sessionmaker[Session]) -> None:
    """Two coordinators on one PostgreSQL recording outcomes at once: every increment lands, and a result id both
    send is recorded by exactly one of them."""
    sessions = pg_sessions
    vids = seed(sessions)
    with sessions() as s:
        right = [POS, NEG] * 300
        own = {k: serve(s, f"own{k}-", right, vids[1], shadow_id=vids[2], shadow_labels=[POS] * 600) for k in range(2)}
        shared = serve(s, "shared-", [POS] * 200, vids[1], shadow_id=vids[2], shadow_labels=[NEG] * 200)
        s.commit()
    reports: list[OutcomeReport] = []
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for start in range(0, 600, 100):
                with sessions() as s:
                    batch = [(r, "pos") for r in own[k][start:start + 100]]
                    batch += [(r, "pos") for r in shared[start // 3:start // 3 + 40]]
                    reports.append(catalog.record_outcomes(s, batch))
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sum(r.recorded for r in reports) == 1200 + 200
    assert all(r.conflicting == () and r.unknown == () for r in reports)
    with sessions() as s:
        primary = catalog.live_stats(s, "sent", 1, window_s=3600).all_time
        shadow = catalog.live_stats(s, "sent", 2, window_s=3600).all_time
        counts = catalog.paired_counts(s, vids[1], vids[2])
    assert (primary.served, primary.labelled, primary.correct) == (1400, 1400, 800)
    assert (shadow.served, shadow.labelled, shadow.correct) == (1400, 1400, 1200)
    assert (counts.both, counts.primary_only, counts.candidate_only, counts.neither) == (600, 200, 600, 0)
    assert primary.confusion == {("pos", "pos"): 800, ("pos", "neg"): 600}


def test_a_writer_that_loses_the_race_reports_it(pg_sessions: sessionmaker[Session]) -> None:
    """Two writers send the same result id: the second waits on the row, finds it taken, and reports already
    recorded (same label) or conflicting (another) without counting it again."""
    vids = seed(pg_sessions)
    with pg_sessions() as s:
        serve(s, "x", [POS, POS], vids[1])
        s.commit()
    first = pg_sessions()
    assert catalog.record_outcomes(first, [("x0", "pos"), ("x1", "neg")]).recorded == 2  # holds the rows, uncommitted
    seen: list[OutcomeReport] = []

    def second() -> None:
        with pg_sessions() as s:
            seen.append(catalog.record_outcomes(s, [("x0", "pos"), ("x1", "pos")]))
            s.commit()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive()  # waiting on the first writer's rows
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert [(r.recorded, r.already, r.conflicting) for r in seen] == [(0, 1, ("x1",))]
    with pg_sessions() as s:
        stats = catalog.live_stats(s, "sent", 1, window_s=3600).all_time
    assert (stats.labelled, stats.correct) == (2, 1)
