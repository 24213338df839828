"""Runs train jobs: QUEUED rows -> a replica's streaming `train_group` -> events, checkpoints, new versions.

Queued jobs on one backbone are co-batched: up to `max_group` of them train together on one replica, one
frozen forward/backward per step for all (each job keeps its own optimizer, schedule and result). State
lives only in SQL (`bank.jobs` holds every state move): every event and checkpoint is committed as it
arrives, a dead replica's jobs go back to the queue and resume from their last checkpoint (up to
`max_attempts` dispatches), and a restarted coordinator requeues what was RUNNING.
"""

from __future__ import annotations

import asyncio
import logging

from ray.exceptions import ActorDiedError, RayActorError

from bank import catalog, datasets
from bank import jobs as jobstore
from bank.writer import BankDB, Session
from coordinator.errors import root_cause
from coordinator.pool import Replica, ReplicaPool
from workers.protocol import EventKind, JobSpec, TrainEvent, TrainRequest

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
                await self.db.run(lambda s, j=job_id: jobstore.requeue(s, j, "the replica died", self.max_attempts))
            await self._until_alive(replica)
        except Exception as exc:  # noqa: BLE001 - any other failure ends the open jobs FAILED with a reason
            cause = root_cause(exc)
            log.warning("jobs %s failed: %r", sorted(open_jobs), cause)
            for job_id in open_jobs:
                await self.db.run(lambda s, j=job_id: jobstore.finish(
                    s, j, "FAILED", error=f"{type(cause).__name__}: {cause}"))
        finally:
            for job_id in group:
                replica.training.discard(job_id)
                self._tasks.pop(job_id, None)
            await self.notify()
            self.wake()

    async def _until_alive(self, replica: Replica) -> None:
        """Hold a replica that died until Ray has restarted it and its model is loaded again (it answers
        `info`), so that the retry runs there instead of spending the job's attempts on calls that fail at
        once while the actor restarts. Bounded, and skipped for an actor Ray will not restart."""
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

    def _begin(self, s: Session, job_id: str, replica: Replica, group: int) -> tuple[TrainRequest, JobSpec] | None:
        """Mark RUNNING and gather what the worker needs: data, init prompt, last checkpoint."""
        mates = f", co-batched with {group - 1} other job(s)" if group > 1 else ""
        started = jobstore.begin(s, job_id, f"on replica {replica.index}{mates}")
        if started is None:
            return None
        job, ckpt = started
        spec = JobSpec.from_json(job.spec)
        init = spec.init_from
        stored = catalog.resolve(s, init).tensor if init and init != "nearest" else None
        request = TrainRequest(job_id=job_id, task=spec.task, config=spec.config,
                               examples=datasets.decode_rows(jobstore.training_data(s, job_id)),
                               init_prompt=stored, resume=ckpt.data if ckpt else None)
        return request, spec

    async def _train(self, group: list[str], replica: Replica, open_jobs: set[str]) -> None:
        requests: list[TrainRequest] = []
        specs: dict[str, JobSpec] = {}
        for job_id in group:
            begun = await self.db.run(lambda s, j=job_id: self._begin(s, j, replica, len(group)))
            if begun is None:
                open_jobs.discard(job_id)
                continue
            request, spec = begun
            if spec.init_from == "nearest" and request.resume is None:
                init_prompt, how = await self._nearest(request, job_id, replica)
                request = TrainRequest(request.job_id, request.task, request.config, request.examples, init_prompt)
                spec = JobSpec(spec.task, spec.config, spec.aliases, spec.init_from, how, spec.data_ref)
            requests.append(request)
            specs[job_id] = spec
        if not requests:
            return
        await self.notify()
        async for ref in replica.handle.train_group.remote(requests):
            ev: TrainEvent = await ref
            if await self._persist(ev, specs[ev.job], replica):
                open_jobs.discard(ev.job)
            if ev.kind is not EventKind.CHECKPOINT:
                await self.notify()

    async def _persist(self, ev: TrainEvent, spec: JobSpec, replica: Replica) -> bool:
        """Store one event; True when it ended its job."""
        job_id = ev.job
        if ev.kind is EventKind.RESULT:
            lineage = {"job": f"jobs/{job_id}", "data": spec.data_ref, "init": spec.init or spec.config.init}
            await self.db.run(lambda s: jobstore.succeed(s, job_id, prompt=ev.prompt, metrics=ev.metrics,
                                                         step=ev.step, lineage=lineage, aliases=spec.aliases))
            return True
        if ev.kind is EventKind.CANCELLED:
            msg = f"cancelled at step {ev.step}; last checkpoint kept"
            await self.db.run(lambda s: jobstore.finish(s, job_id, "CANCELLED", message=msg, step=ev.step))
            return True
        if ev.kind is EventKind.FAILED:
            await self.db.run(lambda s: jobstore.finish(s, job_id, "FAILED", error=ev.error))
            return True
        if ev.kind is EventKind.CHECKPOINT:
            await self.db.run(lambda s: jobstore.save_checkpoint(s, job_id, ev.step, ev.checkpoint))
            return False
        message = "stopping early: no better eval metric" if ev.stopped_early else ""
        cancel = await self.db.run(lambda s: jobstore.record_progress(
            s, job_id, ev.kind.value, step=ev.step, total_steps=ev.total_steps, loss=ev.loss, metrics=ev.metrics,
            examples_per_second=ev.examples_per_second, eta_seconds=ev.eta_seconds, message=message))
        if cancel:
            await replica.handle.cancel.remote(job_id)
        return False

    async def _nearest(self, request: TrainRequest, job_id: str, replica: Replica) -> tuple[bytes | None, str]:
        """SPoT-style transfer: the stored prompt on this backbone under which the new task's data scores best."""

        def candidates(s: Session) -> dict[str, bytes]:
            job = jobstore.get_job(s, job_id)
            return catalog.nearest_candidates(s, job.backbone_name, job.prompt_name, NEAREST_CANDIDATES)

        cands = await self.db.run(candidates)
        if not cands:
            return None, "vocab (nearest: no stored prompt on this backbone)"
        losses = await replica.handle.init_losses.remote(request.task, request.examples[:NEAREST_ROWS], cands)
        if not losses:
            return None, "vocab (nearest: no stored prompt fits)"
        best = min(losses, key=losses.__getitem__)
        return cands[best], f"nearest:{best} (loss {losses[best]:.4f} over {len(losses)} candidates)"

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
