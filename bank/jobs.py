"""The job lifecycle in SQL: create (idempotent on request_id), start, events and checkpoints, the end in one
of three states (success publishes the version in the same transaction), and recovery after a restart.

Every move out of a state checks the job has not already ended, here and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bank.catalog import add_version, get_backbone, get_prompt, remember_request, seen_request, version_name
from bank.models import Checkpoint, Job, JobEvent, utcnow
from promptbank_api.errors import FailedPrecondition, NotFound
from promptbank_api.names import TERMINAL_STATES


def create_job(
    s: Session,
    *,
    prompt_name: str,
    backbone_name: str,
    spec: dict[str, Any],
    examples: bytes,
    request_id: str = "",
    request_hash: str = "",
    note: str = "",
    principal: str = "",
) -> tuple[Job, bool]:
    """Insert a QUEUED job; returns (job, created). A repeated request_id returns the first job (AIP-155).
    `note` joins the "queued" event (e.g. the rows a data file left out)."""
    earlier = seen_request(s, request_id, "CreateTrainJob", request_hash)
    if earlier:
        return get_job(s, earlier.removeprefix("jobs/")), False
    job = Job(id=uuid.uuid4().hex[:16], prompt_name=prompt_name, backbone_name=backbone_name, spec=spec,
              examples=examples, state="QUEUED", created_at=utcnow(), principal=principal)
    s.add(job)
    s.flush()
    add_event(s, job, "STATE_CHANGED", message=f"queued; {note}" if note else "queued")
    remember_request(s, request_id, "CreateTrainJob", request_hash, f"jobs/{job.id}")
    return job, True


def get_job(s: Session, job_id: str) -> Job:
    job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"job 'jobs/{job_id}' not found")
    return job


def list_jobs(s: Session, offset: int, limit: int, state: str = "", prompt: str = "", principal: str | None = None
              ) -> Sequence[Job]:
    """A page of jobs, newest first; `principal` keeps only the jobs it submitted."""
    q = select(Job).order_by(Job.created_at.desc(), Job.id)
    if principal is not None:
        q = q.where(Job.principal == principal)
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
    if job.state in TERMINAL_STATES:
        raise FailedPrecondition(f"job 'jobs/{job.id}' already ended {job.state}")
    job.state = state
    if state == "RUNNING" and job.started_at is None:
        job.started_at = utcnow()
    if state in TERMINAL_STATES:
        job.ended_at = utcnow()
    if error:
        job.error = error
    return add_event(s, job, "STATE_CHANGED", message=message or error, metrics=metrics)


def request_cancel(s: Session, job: Job) -> bool:
    """Mark for cancellation. A QUEUED job ends at once (True); a RUNNING one stops at its next step."""
    if job.state in TERMINAL_STATES:
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


def save_checkpoint(s: Session, job_id: str, step: int, data: bytes) -> None:
    """Store a checkpoint and keep only the newest few per job (one transaction)."""
    s.add(Checkpoint(job_id=job_id, step=step, data=data, created_at=utcnow()))
    s.flush()
    old = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)
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


# ---------------------------------------------------------------- the lifecycle a scheduler drives


def training_data(s: Session, job_id: str) -> bytes:
    """The job's examples (JSON lines): read only when the job is dispatched to train."""
    return s.scalar(select(Job.examples).where(Job.id == job_id)) or b""


def begin(s: Session, job_id: str, where: str) -> tuple[Job, Checkpoint | None] | None:
    """Mark a QUEUED job RUNNING for one more attempt; returns it with its last checkpoint, or None when it is
    no longer queued (cancelled meanwhile). `where` says where it runs, for the job's event."""
    job = get_job(s, job_id)
    if job.state != "QUEUED":
        return None
    job.attempts += 1
    ckpt = latest_checkpoint(s, job_id)
    how = f"resuming from step {ckpt.step}" if ckpt else "starting"
    set_state(s, job, "RUNNING", message=f"{how} {where} (attempt {job.attempts})")
    return job, ckpt


def requeue(s: Session, job_id: str, why: str, max_attempts: int) -> None:
    """Its replica died: back to the queue to resume from its last checkpoint, or FAILED after max_attempts."""
    job = get_job(s, job_id)
    if job.state in TERMINAL_STATES:
        return
    if job.attempts >= max_attempts:
        set_state(s, job, "FAILED", error=f"{why}; gave up after {job.attempts} attempts")
        return
    ckpt = latest_checkpoint(s, job_id)
    where = f"checkpoint at step {ckpt.step}" if ckpt else "the start"
    set_state(s, job, "QUEUED", message=f"{why}; will resume from {where}")


def finish(s: Session, job_id: str, state: str, *, message: str = "", error: str = "", step: int | None = None) -> None:
    """End a job FAILED or CANCELLED (a no-op when it already ended)."""
    job = get_job(s, job_id)
    if job.state in TERMINAL_STATES:
        return
    if step is not None:
        job.step = step
    set_state(s, job, state, message=message, error=error)


def record_progress(s: Session, job_id: str, kind: str, *, step: int, total_steps: int, loss: float | None,
                    metrics: dict[str, float], examples_per_second: float, eta_seconds: float,
                    message: str = "") -> bool:
    """Persist one PROGRESS/EVAL event; returns whether a cancel was requested meanwhile."""
    job = get_job(s, job_id)
    add_event(s, job, kind, step=step, total_steps=total_steps, loss=loss, metrics=metrics,
              examples_per_second=examples_per_second, eta_seconds=eta_seconds, message=message)
    return job.cancel_requested


def succeed(s: Session, job_id: str, *, prompt: bytes, metrics: dict[str, float], step: int,
            lineage: dict[str, str], aliases: Sequence[str]) -> str | None:
    """Publish the trained prompt as a new version, move its aliases and end the job SUCCEEDED — one
    transaction. Returns the version's name (None when the job had already ended)."""
    job = get_job(s, job_id)
    if job.state in TERMINAL_STATES:
        return None
    p, bb = get_prompt(s, job.prompt_name), get_backbone(s, job.backbone_name)
    v = add_version(s, p, bb, prompt, metrics=metrics, lineage=lineage, aliases=aliases, principal=job.principal)
    job.metrics, job.step = metrics, step
    job.result_version = version_name(p.name, v.version)
    set_state(s, job, "SUCCEEDED", message=job.result_version, metrics=metrics)
    return job.result_version
