"""Runs train jobs: QUEUED rows -> a replica's streaming `train_group` -> events, checkpoints, new versions.

Queued jobs on one backbone are co-batched: up to `max_group` of them train together on one replica, one
frozen forward/backward per step for all (each job keeps its own optimizer, schedule and result). State
lives only in SQL: every event and checkpoint is committed as it arrives, a dead replica's jobs go back to
the queue and resume from their last checkpoint (up to `max_attempts` dispatches), and a restarted
coordinator requeues what was RUNNING.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray.exceptions import ActorDiedError, RayActorError
from sqlalchemy.orm import Session

from bank import jobs as jobstore
from bank import store
from bank.models import Prompt, PromptVersion
from coordinator.convert import version_name
from coordinator.data import decode_rows
from coordinator.db import BankDB
from coordinator.pool import Replica, ReplicaPool

log = logging.getLogger("promptbank.coordinator")
NEAREST_CANDIDATES = 64  # stored prompts scored for `init=nearest`
NEAREST_ROWS = 64  # examples of the new task each candidate is scored on
RESTART_WAIT_S = 300.0  # how long a replica that died under jobs is given to come back before it is used again


class JobScheduler:
    """One asyncio loop that starts queued jobs, in co-batched groups, on replicas free for training."""

    def __init__(self, db: BankDB, pool: ReplicaPool, max_group: int = 4, max_attempts: int = 3,
                 gather_s: float = 1.0):
        self.db, self.pool = db, pool
        self.max_group, self.max_attempts, self.gather_s = max_group, max_attempts, gather_s
        self.changed = asyncio.Condition()  # notified on every persisted job event
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # job id -> the task running its group
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
            await asyncio.sleep(self.gather_s)  # jobs submitted together start together (co-batched)
            self._wake.clear()
            try:
                queued = await self.db.run(lambda s: [(j.id, j.backbone_name) for j in jobstore.queued_jobs(s)])
                waiting: dict[str, list[str]] = {}
                for job_id, backbone in queued:
                    if job_id not in self._tasks and backbone in self.pool.backbones:
                        waiting.setdefault(backbone, []).append(job_id)
                for backbone, ids in waiting.items():
                    for replica in self.pool.get(backbone).replicas:
                        if not ids:
                            break
                        if replica.training:  # one group per replica at a time
                            continue
                        group, ids = ids[: self.max_group], ids[self.max_group :]
                        replica.training.update(group)
                        task = asyncio.create_task(self._run(group, replica), name=f"jobs-{'-'.join(group)}")
                        for job_id in group:
                            self._tasks[job_id] = task
            except Exception:  # noqa: BLE001 - the loop must survive a bad row
                log.exception("scheduler pass failed")

    async def _run(self, group: list[str], replica: Replica) -> None:
        open_jobs = set(group)
        try:
            await self._train(group, replica, open_jobs)
        except RayActorError as exc:  # the replica died: its jobs resume elsewhere from their checkpoints
            log.warning("replica %d died under jobs %s: %s", replica.index, sorted(open_jobs), exc)
            for job_id in open_jobs:
                await self.db.run(lambda s, j=job_id: self._retry(s, j, "the replica died"))
            await self._until_alive(replica)
        except Exception as exc:  # noqa: BLE001 - any other failure ends the open jobs FAILED with a reason
            cause = getattr(exc, "cause", None) or exc
            log.warning("jobs %s failed: %r", sorted(open_jobs), cause)
            for job_id in open_jobs:
                await self._fail(job_id, f"{type(cause).__name__}: {cause}")
        finally:
            for job_id in group:
                replica.training.discard(job_id)
                self._tasks.pop(job_id, None)
            await self.notify()
            self.wake()

    async def _until_alive(self, replica: Replica) -> None:
        """Hold a replica that died until Ray has restarted it and its model is loaded again (it answers
        `info`), so that the retry runs there instead of spending the job's attempts on calls that fail at
        once while the actor restarts (on a loaded machine that takes longer than the retries). Bounded, and
        skipped for an actor Ray will not restart."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTART_WAIT_S
        while loop.time() < deadline:
            try:
                await asyncio.wait_for(replica.handle.info.remote(), timeout=deadline - loop.time())
                return
            except ActorDiedError:
                return  # out of restarts: the next dispatch fails and ends its jobs with the reason
            except RayActorError:  # unavailable: still restarting
                await asyncio.sleep(0.5)
            except TimeoutError:
                break
        log.warning("replica %d did not come back within %.0f s", replica.index, RESTART_WAIT_S)

    def _retry(self, s: Session, job_id: str, why: str) -> None:
        job = jobstore.get_job(s, job_id)
        if job.state in jobstore.TERMINAL:
            return
        if job.attempts >= self.max_attempts:
            jobstore.set_state(s, job, "FAILED", error=f"{why}; gave up after {job.attempts} attempts")
            return
        ckpt = jobstore.latest_checkpoint(s, job_id)
        where = f"checkpoint at step {ckpt.step}" if ckpt else "the start"
        jobstore.set_state(s, job, "QUEUED", message=f"{why}; will resume from {where}")

    async def _fail(self, job_id: str, error: str) -> None:
        def q(s: Session) -> None:
            job = jobstore.get_job(s, job_id)
            if job.state not in jobstore.TERMINAL:
                jobstore.set_state(s, job, "FAILED", error=error)

        await self.db.run(q)

    def _begin(self, s: Session, job_id: str, replica: Replica, group: int) -> dict[str, Any] | None:
        """Mark RUNNING and gather what the worker needs: data, init prompt, last checkpoint."""
        job = jobstore.get_job(s, job_id)
        if job.state != "QUEUED":
            return None
        job.attempts += 1
        ckpt = jobstore.latest_checkpoint(s, job_id)
        how = f"resuming from step {ckpt.step}" if ckpt else "starting"
        mates = f", co-batched with {group - 1} other job(s)" if group > 1 else ""
        jobstore.set_state(s, job, "RUNNING",
                           message=f"{how} on replica {replica.index} (attempt {job.attempts}{mates})")
        spec = dict(job.spec)
        examples = decode_rows(job.examples)
        init = spec.get("init_from", "")
        return {
            "job_id": job_id, "task": spec["task"], "examples": examples, "config": spec["config"],
            "init_prompt": store.resolve(s, init).tensor if init and init != "nearest" else None,
            "nearest": init == "nearest", "backbone": job.backbone_name, "prompt": job.prompt_name,
            "resume": ckpt.data if ckpt else None, "spec": spec,
        }

    async def _train(self, group: list[str], replica: Replica, open_jobs: set[str]) -> None:
        specs: dict[str, dict[str, Any]] = {}
        for job_id in group:
            spec = await self.db.run(lambda s, j=job_id: self._begin(s, j, replica, len(group)))
            if spec is None:
                open_jobs.discard(job_id)
                continue
            if spec["nearest"] and spec["resume"] is None:
                spec["init_prompt"], spec["spec"]["init"] = await self._nearest(spec, replica)
            specs[job_id] = spec
        if not specs:
            return
        await self.notify()
        payload = [{k: v for k, v in sp.items() if k in ("job_id", "task", "examples", "config", "init_prompt",
                                                          "resume")} for sp in specs.values()]
        async for ref in replica.handle.train_group.remote(payload):
            ev = await ref
            job_id = ev["job"]
            kind = ev["kind"]
            if kind == "RESULT":
                await self._succeed(job_id, specs[job_id]["spec"], ev)
                open_jobs.discard(job_id)
            elif kind == "CANCELLED":
                msg = f"cancelled at step {ev['step']}; last checkpoint kept"
                await self.db.run(lambda s, j=job_id, m=msg, n=ev["step"]: self._end(s, j, "CANCELLED", m, n))
                open_jobs.discard(job_id)
            elif kind == "FAILED":
                await self._fail(job_id, ev["error"])
                open_jobs.discard(job_id)
            elif kind == "CHECKPOINT":
                await self.db.run(lambda s, ev=ev: jobstore.save_checkpoint(
                    s, jobstore.get_job(s, ev["job"]), ev["step"], ev["checkpoint"]))
                continue
            else:
                cancel = await self.db.run(lambda s, ev=ev: self._progress(s, ev))
                if cancel:
                    await replica.handle.cancel.remote(job_id)
            await self.notify()

    async def _nearest(self, spec: dict[str, Any], replica: Replica) -> tuple[bytes | None, str]:
        """SPoT-style transfer: the stored prompt on this backbone under which the new task's data scores best."""

        def candidates(s: Session) -> dict[str, bytes]:
            bb = store.get_backbone(s, spec["backbone"])
            rows = s.query(PromptVersion).join(Prompt).filter(
                PromptVersion.backbone_id == bb.id, PromptVersion.backbone_fingerprint == bb.fingerprint,
                PromptVersion.version == Prompt.latest_version, Prompt.name != spec["prompt"],
            ).order_by(PromptVersion.created_at.desc()).limit(NEAREST_CANDIDATES).all()
            return {version_name(v.prompt.name, v.version): v.tensor for v in rows}

        cands = await self.db.run(candidates)
        if not cands:
            return None, "vocab (nearest: no stored prompt on this backbone)"
        losses = await replica.handle.init_losses.remote(spec["task"], spec["examples"][:NEAREST_ROWS], cands)
        if not losses:
            return None, "vocab (nearest: no stored prompt fits)"
        best = min(losses, key=losses.__getitem__)
        return cands[best], f"nearest:{best} (loss {losses[best]:.4f} over {len(losses)} candidates)"

    @staticmethod
    def _end(s: Session, job_id: str, state: str, message: str, step: int | None = None) -> None:
        job = jobstore.get_job(s, job_id)
        if job.state not in jobstore.TERMINAL:
            if step is not None:
                job.step = step
            jobstore.set_state(s, job, state, message=message)

    @staticmethod
    def _progress(s: Session, ev: dict[str, Any]) -> bool:
        """Persist one PROGRESS/EVAL event; returns whether a cancel was requested meanwhile."""
        job = jobstore.get_job(s, ev["job"])
        jobstore.add_event(
            s, job, ev["kind"], step=ev["step"], total_steps=ev["total_steps"], loss=ev.get("loss"),
            metrics=ev.get("metrics"), examples_per_second=ev.get("examples_per_second", 0.0),
            eta_seconds=ev.get("eta_seconds", 0.0),
            message="stopping early: no better eval accuracy" if ev.get("stopped_early") else "",
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
        for t in set(self._tasks.values()):
            t.cancel()
