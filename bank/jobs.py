"""The job lifecycle in SQL: create (idempotent on request_id), claim under a lease, events and checkpoints,
the end in one of three states (success publishes the version in the same transaction), and recovery.

This module creates, lists and cancels jobs; a job's history (state moves, events, checkpoints) is in
bank/job_history.py and the leased lifecycle a scheduler drives in bank/job_leases.py, both named here too, so
callers write `jobs.claim(...)` whichever part they need. Public functions return read models (`JobRecord`,
...), never rows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bank import reads
from bank.datasets import check_storage
from bank.idempotency import remember_request, seen_request
from bank.job_history import (
    KEEP_CHECKPOINTS,
    _add_event,
    _job_row,
    _set_state,
    events_after,
    latest_checkpoint,
    store_checkpoint,
)
from bank.job_leases import (
    LeaseLost,
    claim,
    finish,
    reclaim_expired,
    record_progress,
    release,
    renew_leases,
    requeue,
    save_checkpoint,
    succeed,
    training_data,
)
from bank.models import Job, utcnow
from promptbank_api.errors import FailedPrecondition
from promptbank_domain.jobs import JobRecord, JobSpec
from promptbank_domain.states import TERMINAL_STATES, JobState

__all__ = [
    "KEEP_CHECKPOINTS", "LeaseLost", "active_on_backbone", "claim", "count_by_state", "create_job", "events_after",
    "fail_active_on_backbone", "finish", "get_job", "latest_checkpoint", "list_jobs", "queued_jobs",
    "reclaim_expired", "record_progress", "release", "renew_leases", "request_cancel", "requeue", "save_checkpoint",
    "store_checkpoint", "succeed", "training_data",
]


def create_job(
    s: Session,
    *,
    prompt_name: str,
    backbone_name: str,
    spec: JobSpec,
    examples: bytes,
    request_id: str = "",
    request_hash: str = "",
    note: str = "",
    principal: str = "",
    inline: bool = False,
    quota: int | None = None,
) -> tuple[JobRecord, bool]:
    """Insert a QUEUED job; returns (job, created). A repeated request_id from the same principal returns the
    first job (AIP-155). `note` joins the "queued" event (e.g. the rows a data file left out). `inline`: the
    examples came in the request, so they count against the principal's storage `quota` while the job lives."""
    earlier = seen_request(s, request_id, "CreateTrainJob", request_hash, principal=principal)
    if earlier:
        return get_job(s, earlier.removeprefix("jobs/")), False
    inline_bytes = len(examples) if inline else 0
    if inline_bytes and quota is not None:
        check_storage(s, principal, inline_bytes, quota, "inline examples")
    job = Job(id=uuid.uuid4().hex[:16], prompt_name=prompt_name, backbone_name=backbone_name, spec=spec.to_json(),
              examples=examples, state=JobState.QUEUED, created_at=utcnow(), principal=principal,
              inline_bytes=inline_bytes)
    s.add(job)
    s.flush()
    _add_event(s, job, "STATE_CHANGED", message=f"queued; {note}" if note else "queued")
    remember_request(s, request_id, "CreateTrainJob", request_hash, f"jobs/{job.id}", principal=principal)
    return reads.job(job), True


def get_job(s: Session, job_id: str) -> JobRecord:
    return reads.job(_job_row(s, job_id))


def list_jobs(s: Session, offset: int, limit: int, state: str = "", prompt: str = "", principal: str | None = None
              ) -> list[JobRecord]:
    """A page of jobs, newest first; `principal` keeps only the jobs it submitted."""
    q = select(Job).order_by(Job.created_at.desc(), Job.id)
    if principal is not None:
        q = q.where(Job.principal == principal)
    if state:
        q = q.where(Job.state == state)
    if prompt:
        q = q.where(Job.prompt_name == prompt)
    return [reads.job(j) for j in s.scalars(q.offset(offset).limit(limit)).all()]


def count_by_state(s: Session) -> dict[str, int]:
    """How many jobs the bank holds in each state (one grouped count over the state index; for metrics)."""
    return {state: n for state, n in s.execute(select(Job.state, func.count()).group_by(Job.state))}


def queued_jobs(s: Session) -> list[JobRecord]:
    return [reads.job(j) for j in
            s.scalars(select(Job).where(Job.state == JobState.QUEUED).order_by(Job.created_at, Job.id)).all()]


def request_cancel(s: Session, job_id: str) -> JobRecord:
    """Mark for cancellation: a QUEUED job ends at once; a RUNNING one stops at its next step. Returns the job."""
    job = _job_row(s, job_id)
    if job.state in TERMINAL_STATES:
        raise FailedPrecondition(f"job 'jobs/{job.id}' already ended {job.state}")
    job.cancel_requested = True
    if job.state == JobState.QUEUED:
        _set_state(s, job, JobState.CANCELLED, message="cancelled before it started")
    return reads.job(job)


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


def active_on_backbone(s: Session, backbone: str) -> list[JobRecord]:
    """The jobs on a backbone that are queued or running (under any coordinator's lease), oldest first."""
    q = select(Job).where(Job.backbone_name == backbone, Job.state.in_(ACTIVE_STATES)).order_by(Job.created_at, Job.id)
    return [reads.job(j) for j in s.scalars(q).all()]


def fail_active_on_backbone(s: Session, backbone: str, reason: str) -> list[JobRecord]:
    """End FAILED, with `reason`, every job on a backbone that is queued or running, whichever coordinator leases it
    (its backbone is going away). A coordinator still driving one finds it ended at its next write: it writes
    nothing more for it and stops it on its replica (bank/job_leases.py). Returns the jobs as they were."""
    jobs = s.scalars(select(Job).where(Job.backbone_name == backbone, Job.state.in_(ACTIVE_STATES))
                     .order_by(Job.created_at, Job.id).with_for_update()).all()
    before = [reads.job(j) for j in jobs]
    for job in jobs:
        was = job.state
        job.lease_owner, job.lease_expires_at = "", None
        _set_state(s, job, JobState.FAILED, error=f"{reason} (the job was {was} at step {job.step})")
    return before
