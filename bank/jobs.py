"""Job bookkeeping: create (idempotent on request_id), state moves, events, and recovery after restart."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bank.errors import AlreadyExists, FailedPrecondition, NotFound
from bank.models import Checkpoint, Job, JobEvent, utcnow

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def create_job(
    s: Session,
    *,
    prompt_name: str,
    backbone_name: str,
    spec: dict[str, Any],
    examples: bytes,
    request_id: str | None,
    request_hash: str,
) -> tuple[Job, bool]:
    """Insert a QUEUED job; returns (job, created). A repeated request_id returns the first job."""
    if request_id:
        old = s.scalar(select(Job).where(Job.request_id == request_id))
        if old is not None:
            if old.request_hash != request_hash:
                raise AlreadyExists(f"request_id {request_id!r} was already used for a different request")
            return old, False
    job = Job(
        id=uuid.uuid4().hex[:16],
        request_id=request_id or None,
        request_hash=request_hash,
        prompt_name=prompt_name,
        backbone_name=backbone_name,
        spec=spec,
        examples=examples,
        state="QUEUED",
        created_at=utcnow(),
    )
    s.add(job)
    s.flush()
    add_event(s, job, "STATE_CHANGED", message="queued")
    return job, True


def get_job(s: Session, job_id: str) -> Job:
    job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"job 'jobs/{job_id}' not found")
    return job


def list_jobs(s: Session, offset: int, limit: int, state: str = "", prompt: str = "") -> Sequence[Job]:
    q = select(Job).order_by(Job.created_at.desc(), Job.id)
    if state:
        q = q.where(Job.state == state)
    if prompt:
        q = q.where(Job.prompt_name == prompt)
    return s.scalars(q.offset(offset).limit(limit)).all()


def queued_jobs(s: Session) -> Sequence[Job]:
    return s.scalars(select(Job).where(Job.state == "QUEUED").order_by(Job.created_at, Job.id)).all()


def requeue_running(s: Session) -> list[str]:
    """After a coordinator restart, RUNNING jobs have lost their driver: put them back in the queue."""
    jobs = s.scalars(select(Job).where(Job.state == "RUNNING")).all()
    for job in jobs:
        set_state(s, job, "QUEUED", message="requeued after coordinator restart")
    return [j.id for j in jobs]


def set_state(
    s: Session, job: Job, state: str, *, message: str = "", error: str = "", metrics: dict[str, float] | None = None
) -> JobEvent:
    if job.state in TERMINAL:
        raise FailedPrecondition(f"job 'jobs/{job.id}' already ended {job.state}")
    job.state = state
    if state == "RUNNING" and job.started_at is None:
        job.started_at = utcnow()
    if state in TERMINAL:
        job.ended_at = utcnow()
    if error:
        job.error = error
    return add_event(s, job, "STATE_CHANGED", message=message or error, metrics=metrics)


def request_cancel(s: Session, job: Job) -> bool:
    """Mark for cancellation. A QUEUED job ends at once (True); a RUNNING one stops at its next step."""
    if job.state in TERMINAL:
        raise FailedPrecondition(f"job 'jobs/{job.id}' already ended {job.state}")
    job.cancel_requested = True
    if job.state == "QUEUED":
        set_state(s, job, "CANCELLED", message="cancelled before it started")
        return True
    return False


def add_event(
    s: Session,
    job: Job,
    kind: str,
    *,
    step: int | None = None,
    total_steps: int | None = None,
    loss: float | None = None,
    metrics: dict[str, float] | None = None,
    examples_per_second: float = 0.0,
    eta_seconds: float = 0.0,
    message: str = "",
) -> JobEvent:
    if step is not None:
        job.step = step
    if total_steps is not None:
        job.total_steps = total_steps
    if loss is not None:
        job.loss = loss
    seq = (s.scalar(select(func.max(JobEvent.sequence)).where(JobEvent.job_id == job.id)) or 0) + 1
    ev = JobEvent(
        job_id=job.id,
        sequence=seq,
        kind=kind,
        state=job.state,
        step=job.step,
        total_steps=job.total_steps,
        loss=job.loss,
        metrics=dict(metrics or {}),
        examples_per_second=examples_per_second,
        eta_seconds=eta_seconds,
        message=message,
        at=utcnow(),
    )
    s.add(ev)
    s.flush()
    return ev


KEEP_CHECKPOINTS = 2


def save_checkpoint(s: Session, job: Job, step: int, data: bytes) -> None:
    """Store a checkpoint and keep only the newest few per job (one transaction)."""
    s.add(Checkpoint(job_id=job.id, step=step, data=data, created_at=utcnow()))
    s.flush()
    old = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job.id)
                    .order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).offset(KEEP_CHECKPOINTS)).all()
    for c in old:
        s.delete(c)
    s.flush()


def latest_checkpoint(s: Session, job_id: str) -> Checkpoint | None:
    q = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
    return s.scalars(q.limit(1)).first()


def events_after(s: Session, job_id: str, sequence: int) -> Sequence[JobEvent]:
    q = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.sequence > sequence).order_by(JobEvent.sequence)
    return s.scalars(q).all()
