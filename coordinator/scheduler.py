"""Runs train jobs: QUEUED rows -> a replica's streaming `train` -> events, checkpoints and the new version.

State lives only in SQL, so a restarted coordinator requeues what was RUNNING and carries on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sqlalchemy.orm import Session

from bank import jobs as jobstore
from bank import store
from coordinator.convert import version_name
from coordinator.db import BankDB
from coordinator.pool import ReplicaPool

log = logging.getLogger("promptbank.coordinator")


class JobScheduler:
    """One asyncio loop that starts queued jobs when their backbone has a replica free for training."""

    def __init__(self, db: BankDB, pool: ReplicaPool):
        self.db, self.pool = db, pool
        self.changed = asyncio.Condition()  # notified on every persisted job event
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        requeued = await self.db.run(jobstore.requeue_running)
        if requeued:
            log.info("requeued %d job(s) left RUNNING by a previous coordinator", len(requeued))
        self._loop_task = asyncio.create_task(self._loop(), name="job-scheduler")
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                queued = await self.db.run(lambda s: [(j.id, j.backbone_name) for j in jobstore.queued_jobs(s)])
                for job_id, backbone in queued:
                    if job_id in self._tasks or backbone not in self.pool.backbones:
                        continue
                    replica = self.pool.pick(backbone)
                    if replica.training:  # one training job per replica at a time
                        continue
                    replica.training.add(job_id)
                    task = asyncio.create_task(self._run(job_id, replica), name=f"job-{job_id}")
                    self._tasks[job_id] = task
            except Exception:  # noqa: BLE001 - the loop must survive a bad row
                log.exception("scheduler pass failed")

    async def _run(self, job_id: str, replica: Any) -> None:
        try:
            await self._train(job_id, replica)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job FAILED with a reason
            cause = getattr(exc, "cause", None) or exc
            log.warning("job %s failed: %r", job_id, cause)
            await self._fail(job_id, f"{type(cause).__name__}: {cause}")
        finally:
            replica.training.discard(job_id)
            self._tasks.pop(job_id, None)
            await self.notify()
            self.wake()

    async def _fail(self, job_id: str, error: str) -> None:
        def q(s: Session) -> None:
            job = jobstore.get_job(s, job_id)
            if job.state not in jobstore.TERMINAL:
                jobstore.set_state(s, job, "FAILED", error=error)

        await self.db.run(q)

    async def _train(self, job_id: str, replica: Any) -> None:
        def begin(s: Session) -> dict[str, Any] | None:
            job = jobstore.get_job(s, job_id)
            if job.state != "QUEUED":
                return None
            jobstore.set_state(s, job, "RUNNING", message=f"running on replica {replica.index}")
            spec = dict(job.spec)
            spec["examples"] = [tuple(json.loads(line)) for line in job.examples.decode().splitlines() if line]
            init = spec.get("init_from", "")
            spec["init_bytes"] = store.resolve(s, init).tensor if init else None
            return spec

        spec = await self.db.run(begin)
        if spec is None:
            return
        await self.notify()
        gen = replica.handle.train.remote(job_id, spec["task"], spec["examples"], spec["config"], spec["init_bytes"])
        async for ref in gen:
            ev = await ref
            if ev["kind"] == "RESULT":
                await self._succeed(job_id, spec, ev)
            elif ev["kind"] == "CANCELLED":
                msg = f"cancelled at step {ev['step']}"
                await self.db.run(lambda s, msg=msg: self._end(s, job_id, "CANCELLED", msg))
            else:
                cancel = await self.db.run(lambda s, ev=ev: self._progress(s, job_id, ev))
                if cancel:
                    await replica.handle.cancel.remote(job_id)
            await self.notify()

    @staticmethod
    def _end(s: Session, job_id: str, state: str, message: str) -> None:
        job = jobstore.get_job(s, job_id)
        if job.state not in jobstore.TERMINAL:
            jobstore.set_state(s, job, state, message=message)

    @staticmethod
    def _progress(s: Session, job_id: str, ev: dict[str, Any]) -> bool:
        """Persist one PROGRESS/EVAL event; returns whether a cancel was requested meanwhile."""
        job = jobstore.get_job(s, job_id)
        jobstore.add_event(
            s, job, ev["kind"], step=ev["step"], total_steps=ev["total_steps"], loss=ev.get("loss"),
            metrics=ev.get("metrics"), examples_per_second=ev.get("examples_per_second", 0.0),
            eta_seconds=ev.get("eta_seconds", 0.0),
        )
        return job.cancel_requested

    async def _succeed(self, job_id: str, spec: dict[str, Any], ev: dict[str, Any]) -> None:
        """The version, its aliases and the job's end commit in one transaction."""

        def q(s: Session) -> None:
            job = jobstore.get_job(s, job_id)
            if job.state in jobstore.TERMINAL:
                return
            prompt = store.get_prompt(s, job.prompt_name)
            backbone = store.get_backbone(s, job.backbone_name)
            lineage = {"job": f"jobs/{job_id}", "data": spec.get("data_ref", ""), "init": spec.get("init", "")}
            v = store.add_version(s, prompt, backbone, ev["prompt"], metrics=ev["metrics"], lineage=lineage,
                                  aliases=spec.get("aliases", []))
            job.metrics = ev["metrics"]
            job.result_version = version_name(prompt.name, v.version)
            job.step = ev["step"]
            jobstore.set_state(s, job, "SUCCEEDED", message=job.result_version, metrics=ev["metrics"])

        await self.db.run(q)

    async def cancel(self, job_id: str) -> None:
        """Ask the replica running the job to stop at its next step (the DB flag is already set)."""
        for bb in self.pool.backbones.values():
            for r in bb.replicas:
                if job_id in r.training:
                    await r.handle.cancel.remote(job_id)

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
        for t in list(self._tasks.values()):
            t.cancel()
