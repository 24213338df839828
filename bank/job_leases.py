"""The lifecycle a scheduler drives, under a lease. A running job is leased by one coordinator (owner id +
expiry, renewed by its heartbeat): `claim` is a compare-and-set, every later write checks the lease (`_leased`),
and only a lapsed lease lets another coordinator requeue the job (`reclaim_expired`). So a job never runs under
two coordinators at once, and a coordinator that lost a lease writes nothing more for it. Success publishes the
version in the same transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from bank import reads
from bank.backbones import _find_backbone_row
from bank.failpoints import failpoint
from bank.job_history import (
    _add_event,
    _job_row,
    _latest_checkpoint_row,
    _set_state,
    latest_checkpoint,
    store_checkpoint,
)
from bank.models import Job, utcnow
from bank.prompts import _prompt_row
from bank.versions import _add_version_row
from promptbank_api.errors import NotFound
from promptbank_api.names import version_name
from promptbank_domain.jobs import CheckpointRecord, JobRecord
from promptbank_domain.states import TERMINAL_STATES, JobState


def training_data(s: Session, job_id: str) -> bytes:
    """The job's examples (JSON lines): read only when the job is dispatched to train."""
    return s.scalar(select(Job.examples).where(Job.id == job_id)) or b""


class LeaseLost(Exception):
    """This coordinator no longer holds the job's lease (it lapsed and another coordinator took the job over, or
    the job was requeued): stop driving the job and write nothing more for it."""


def _lease_end(lease_s: float) -> datetime:
    return utcnow() + timedelta(seconds=lease_s)


def _leased(s: Session, job_id: str, owner: str) -> Job | None:
    """The job, row-locked until commit (PostgreSQL; a SQLite writer holds the file), if `owner` still holds its
    lease; None when it already ended. Every write a running job makes goes through here: the lease fences it."""
    job = s.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None:
        raise NotFound(f"job 'jobs/{job_id}' not found")
    if job.state in TERMINAL_STATES:
        return None
    if job.state != JobState.RUNNING or job.lease_owner != owner:
        raise LeaseLost(f"job 'jobs/{job_id}' is {job.state} under {job.lease_owner or 'no coordinator'}, not {owner}")
    return job


def claim(s: Session, job_id: str, owner: str, lease_s: float, where: str
          ) -> tuple[JobRecord, CheckpointRecord | None] | None:
    """Take a QUEUED job for one more attempt under `owner`'s lease: a compare-and-set on the state, so of two
    coordinators claiming one job exactly one wins. Returns it with its last checkpoint, or None when it was
    not QUEUED any more (another coordinator won, or it was cancelled meanwhile). `where` goes in its event."""
    # a bulk UPDATE's result is a CursorResult (Session.execute is typed for SELECTs' rows)
    won = cast(CursorResult[Any], s.execute(update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED)
                    .values(state=JobState.RUNNING, lease_owner=owner, lease_expires_at=_lease_end(lease_s),
                            attempts=Job.attempts + 1)
                    .execution_options(synchronize_session=False))).rowcount
    if won != 1:
        return None
    job = _job_row(s, job_id)
    s.refresh(job)
    if job.started_at is None:
        job.started_at = utcnow()
    ckpt = latest_checkpoint(s, job_id)
    how = f"resuming from step {ckpt.step}" if ckpt else "starting"
    _add_event(s, job, "STATE_CHANGED", message=f"{how} {where} under {owner} (attempt {job.attempts})")
    return reads.job(job), ckpt


def renew_leases(s: Session, owner: str, job_ids: Collection[str], lease_s: float) -> set[str]:
    """The heartbeat: extend `owner`'s leases on these jobs; returns the ids it still holds (renewed)."""
    if not job_ids:
        return set()
    held = set(s.scalars(select(Job.id).where(Job.id.in_(list(job_ids)), Job.state == JobState.RUNNING,
                                              Job.lease_owner == owner).with_for_update()))
    if held:
        s.execute(update(Job).where(Job.id.in_(held)).values(lease_expires_at=_lease_end(lease_s))
                  .execution_options(synchronize_session=False))
    return held


def _back_to_queue(s: Session, job: Job, why: str, max_attempts: int) -> None:
    """Requeue a job that lost its driver, to resume from its last checkpoint, or FAIL it after max_attempts."""
    job.lease_owner, job.lease_expires_at = "", None
    if job.cancel_requested:
        _set_state(s, job, JobState.CANCELLED, message=f"{why}; cancelled as requested, last checkpoint kept")
        return
    if job.attempts >= max_attempts:
        _set_state(s, job, JobState.FAILED, error=f"{why}; gave up after {job.attempts} attempts")
        return
    ckpt = _latest_checkpoint_row(s, job.id)
    where = f"checkpoint at step {ckpt.step}" if ckpt else "the start"
    _set_state(s, job, JobState.QUEUED, message=f"{why}; will resume from {where}")


def reclaim_expired(s: Session, max_attempts: int, keep: Collection[str] = ()) -> list[str]:
    """RUNNING jobs whose lease lapsed (their coordinator died or lost the bank) go back to the queue. A live
    coordinator renews its leases well before they lapse, so a job still running is never taken. `keep`: the
    caller's own running jobs, never requeued by itself."""
    now = utcnow()
    q = select(Job).where(Job.state == JobState.RUNNING, Job.lease_expires_at < now)
    if keep:
        q = q.where(Job.id.not_in(list(keep)))
    jobs = s.scalars(q.with_for_update(skip_locked=True)).all()
    for job in jobs:
        gone = job.lease_owner or "a coordinator"
        _back_to_queue(s, job, f"the lease of {gone} expired", max_attempts)
    return [j.id for j in jobs]


def release(s: Session, owner: str, job_ids: Collection[str], why: str) -> list[str]:
    """Hand jobs back to the queue at once (a graceful shutdown): no other coordinator need wait for a lease."""
    jobs = s.scalars(select(Job).where(Job.id.in_(list(job_ids)), Job.state == JobState.RUNNING, Job.lease_owner == owner)
                     .with_for_update()).all()
    for job in jobs:
        job.lease_owner, job.lease_expires_at = "", None
        if job.cancel_requested:
            _set_state(s, job, JobState.CANCELLED, message="cancelled as requested; last checkpoint kept")
            continue
        job.attempts = max(job.attempts - 1, 0)  # a graceful hand-back is no failed attempt
        _set_state(s, job, JobState.QUEUED, message=why)
    return [j.id for j in jobs]


def requeue(s: Session, job_id: str, why: str, max_attempts: int, *, owner: str) -> None:
    """Its replica died: back to the queue to resume from its last checkpoint, or FAILED after max_attempts."""
    job = _leased(s, job_id, owner)
    if job is not None:
        _back_to_queue(s, job, why, max_attempts)


def finish(s: Session, job_id: str, state: JobState, *, owner: str, message: str = "", error: str = "",
           step: int | None = None) -> None:
    """End a job FAILED or CANCELLED (a no-op when it already ended)."""
    job = _leased(s, job_id, owner)
    if job is None:
        return
    if step is not None:
        job.step = step
    job.lease_owner, job.lease_expires_at = "", None
    _set_state(s, job, state, message=message, error=error)


def save_checkpoint(s: Session, job_id: str, step: int, data: bytes, *, owner: str) -> None:
    """Store a checkpoint of a job `owner` runs (see `store_checkpoint`)."""
    if _leased(s, job_id, owner) is not None:
        store_checkpoint(s, job_id, step, data)


def record_progress(s: Session, job_id: str, kind: str, *, owner: str, step: int, total_steps: int,
                    loss: float | None, metrics: dict[str, float], examples_per_second: float, eta_seconds: float,
                    message: str = "") -> bool:
    """Persist one PROGRESS/EVAL event; returns whether a cancel was requested meanwhile."""
    job = _leased(s, job_id, owner)
    if job is None:
        return True
    _add_event(s, job, kind, step=step, total_steps=total_steps, loss=loss, metrics=metrics,
              examples_per_second=examples_per_second, eta_seconds=eta_seconds, message=message)
    return job.cancel_requested


def succeed(s: Session, job_id: str, *, owner: str, prompt: bytes, metrics: dict[str, float], step: int,
            lineage: dict[str, str], aliases: Sequence[str]) -> str | None:
    """Publish the trained prompt as a new version, move its aliases and end the job SUCCEEDED — one
    transaction, under the job's lease (a coordinator that lost it publishes nothing). Returns the version's
    name (None when the job had already ended, or it FAILED because its prompt was recreated since it was
    queued: who may publish there was decided for the old prompt)."""
    job = _leased(s, job_id, owner)
    if job is None:
        return None
    p, bb = _prompt_row(s, job.prompt_name), _find_backbone_row(s, job.backbone_name)
    if p.created_at > job.created_at:  # its publish rights were checked against the prompt since deleted
        job.lease_owner, job.lease_expires_at = "", None
        _set_state(s, job, JobState.FAILED, error=f"prompt {p.name!r} was deleted and created again after this job was "
                                          f"queued; nothing was published")
        return None
    if bb is None:  # deregistered (through another coordinator) with no version left to keep its entry
        job.lease_owner, job.lease_expires_at = "", None
        _set_state(s, job, JobState.FAILED, error=f"backbone {job.backbone_name!r} was removed from the catalog "
                                          f"(DeregisterBackbone) while this job ran; nothing was published")
        return None
    v = _add_version_row(s, p, bb, prompt, metrics=metrics, lineage=lineage, aliases=aliases, principal=job.principal)
    s.flush()
    failpoint("publish.before_commit")  # tests kill the process here: the version must not survive
    job.metrics, job.step = metrics, step
    job.lease_owner, job.lease_expires_at = "", None
    job.result_version = version_name(p.name, v.version)
    _set_state(s, job, JobState.SUCCEEDED, message=job.result_version, metrics=metrics)
    return job.result_version
