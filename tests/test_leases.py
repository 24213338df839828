"""Job leases in the bank, on SQLite and PostgreSQL: one winner per claim, fenced writes, takeover only after
the lease lapses, graceful hand-back. The served, multi-process cases are in tests/test_crash.py."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from bank import jobs
from bank.codec import encode_prompt
from bank.db import make_engine, make_sessionmaker
from bank.models import Job, PromptVersion, utcnow
from tests.pg_fixtures import BACKENDS, fresh_db_url
from tests.test_bank import SPEC, seed

LEASE_S = 30.0


@pytest.fixture(params=BACKENDS)
def sessions(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Each test runs on SQLite and on PostgreSQL, each time on a fresh database."""
    engine = make_engine(fresh_db_url(request, request.param, tmp_path))
    yield make_sessionmaker(engine)
    engine.dispose()


def queued(sessions) -> str:  # type: ignore[no-untyped-def]
    with sessions() as s:
        seed(s)
        job, _ = jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=b"")
        s.commit()
        return job.id


def expire(sessions, job_id: str) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        s.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
        s.commit()


def publish(s, job_id: str, owner: str) -> str | None:  # type: ignore[no-untyped-def]
    return jobs.succeed(s, job_id, owner=owner, prompt=encode_prompt(torch.zeros(2, 8)), metrics={}, step=5,
                        lineage={}, aliases=[])


def test_of_concurrent_claims_exactly_one_wins(sessions) -> None:  # type: ignore[no-untyped-def]
    job_id = queued(sessions)
    n = 8
    start = threading.Barrier(n)
    won: list[str] = []
    errors: list[BaseException] = []

    def claim(owner: str) -> None:
        try:
            with sessions() as s:
                start.wait()
                if jobs.claim(s, job_id, owner, LEASE_S, "on replica 0") is not None:
                    won.append(owner)
                s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(f"c{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(won) == 1, won
    with sessions() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.lease_owner, job.attempts) == ("RUNNING", won[0], 1)
        assert job.lease_expires_at > utcnow() + timedelta(seconds=LEASE_S - 5)


def test_a_coordinator_that_lost_the_lease_writes_nothing(sessions) -> None:  # type: ignore[no-untyped-def]
    job_id = queued(sessions)
    with sessions() as s:
        assert jobs.claim(s, job_id, "a", LEASE_S, "on replica 0") is not None
        s.commit()
    with sessions() as s:  # a live lease is not taken
        assert jobs.reclaim_expired(s, max_attempts=3) == []
        assert jobs.claim(s, job_id, "b", LEASE_S, "on replica 0") is None
        s.commit()
    expire(sessions, job_id)  # "a" stalled past its lease: "b" takes the job over
    with sessions() as s:
        assert jobs.reclaim_expired(s, max_attempts=3) == [job_id]
        assert jobs.claim(s, job_id, "b", LEASE_S, "on replica 1") is not None
        s.commit()
    with sessions() as s:
        assert jobs.renew_leases(s, "a", [job_id], LEASE_S) == set()
        with pytest.raises(jobs.LeaseLost, match="RUNNING under b, not a"):
            jobs.record_progress(s, job_id, "PROGRESS", owner="a", step=3, total_steps=9, loss=0.1, metrics={},
                                 examples_per_second=1.0, eta_seconds=1.0)
        with pytest.raises(jobs.LeaseLost):
            jobs.save_checkpoint(s, job_id, 3, b"stale", owner="a")
        with pytest.raises(jobs.LeaseLost):
            publish(s, job_id, "a")
    with sessions() as s:
        assert s.query(PromptVersion).count() == 0 and jobs.latest_checkpoint(s, job_id) is None
        assert jobs.renew_leases(s, "b", [job_id], LEASE_S) == {job_id}
        assert publish(s, job_id, "b") == "prompts/sent/versions/1"
        s.commit()
    with sessions() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.attempts, job.lease_owner) == ("SUCCEEDED", 2, "")
        messages = [e.message for e in jobs.events_after(s, job_id, 0)]
        assert "the lease of a expired; will resume from the start" in messages
        assert any(m.startswith("starting on replica 1 under b (attempt 2)") for m in messages), messages
        assert s.query(PromptVersion).count() == 1


def test_expired_leases_fail_after_max_attempts_and_honour_cancels(sessions) -> None:  # type: ignore[no-untyped-def]
    job_id = queued(sessions)
    for attempt in (1, 2):
        with sessions() as s:
            assert jobs.claim(s, job_id, f"c{attempt}", LEASE_S, "on replica 0") is not None
            s.commit()
        expire(sessions, job_id)
        with sessions() as s:
            jobs.reclaim_expired(s, max_attempts=2)
            s.commit()
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job.state == "FAILED" and job.error == "the lease of c2 expired; gave up after 2 attempts"

    other = None
    with sessions() as s:
        other, _ = jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=b"")
        s.flush()
        assert jobs.claim(s, other.id, "a", LEASE_S, "on replica 0") is not None
        assert jobs.request_cancel(s, other.id).state == "RUNNING"  # RUNNING: stops at its next step
        s.commit()
    expire(sessions, other.id)
    with sessions() as s:
        assert jobs.reclaim_expired(s, max_attempts=3) == [other.id]
        s.commit()
        assert s.get(Job, other.id).state == "CANCELLED"


def test_a_graceful_release_requeues_at_once_and_costs_no_attempt(sessions) -> None:  # type: ignore[no-untyped-def]
    job_id = queued(sessions)
    with sessions() as s:
        assert jobs.claim(s, job_id, "a", LEASE_S, "on replica 0") is not None
        jobs.save_checkpoint(s, job_id, 7, b"ckpt", owner="a")
        s.commit()
    with sessions() as s:
        assert jobs.release(s, "b", [job_id], "not mine") == []  # only the owner hands a job back
        assert jobs.release(s, "a", [job_id], "requeued at coordinator shutdown") == [job_id]
        s.commit()
    with sessions() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.attempts, job.lease_owner, job.lease_expires_at) == ("QUEUED", 0, "", None)
        claimed = jobs.claim(s, job_id, "b", LEASE_S, "on replica 0")
        assert claimed is not None and claimed[1] is not None and claimed[1].step == 7
        s.commit()
        assert s.get(Job, job_id).attempts == 1
