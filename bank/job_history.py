"""A job's row and its history: state changes, events and checkpoints. Every move out of a state checks that
the job has not already ended, here and nowhere else (`_set_state`)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bank import reads
from bank.models import Checkpoint, Job, JobEvent, utcnow
from promptbank_api.errors import FailedPrecondition, NotFound
from promptbank_domain.jobs import CheckpointRecord, JobEventRecord
from promptbank_domain.states import TERMINAL_STATES, JobState


def _job_row(s: Session, job_id: str) -> Job:
    job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"job 'jobs/{job_id}' not found")
    return job


def _set_state(
    s: Session, job: Job, state: JobState, *, message: str = "", error: str = "", metrics: dict[str, float] | None = None
) -> JobEvent:
    if job.state in TERMINAL_STATES:
        raise FailedPrecondition(f"job 'jobs/{job.id}' already ended {job.state}")
    job.state = state
    if state == JobState.RUNNING and job.started_at is None:
        job.started_at = utcnow()
    if state in TERMINAL_STATES:  # its examples are needed no more: drop them (and free its principal's quota)
        job.ended_at = utcnow()
        job.examples, job.inline_bytes = b"", 0
    if error:
        job.error = error
    return _add_event(s, job, "STATE_CHANGED", message=message or error, metrics=metrics)


def _add_event(
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


def store_checkpoint(s: Session, job_id: str, step: int, data: bytes) -> None:
    """Store a checkpoint and keep only the newest few per job (one transaction)."""
    s.add(Checkpoint(job_id=job_id, step=step, data=data, created_at=utcnow()))
    s.flush()
    old = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)
                    .order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).offset(KEEP_CHECKPOINTS)).all()
    for c in old:
        s.delete(c)
    s.flush()


def _latest_checkpoint_row(s: Session, job_id: str) -> Checkpoint | None:
    q = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
    return s.scalars(q.limit(1)).first()


def latest_checkpoint(s: Session, job_id: str) -> CheckpointRecord | None:
    c = _latest_checkpoint_row(s, job_id)
    return None if c is None else CheckpointRecord(step=c.step, data=c.data)


def events_after(s: Session, job_id: str, sequence: int) -> list[JobEventRecord]:
    q = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.sequence > sequence).order_by(JobEvent.sequence)
    return [reads.job_event(e) for e in s.scalars(q).all()]
