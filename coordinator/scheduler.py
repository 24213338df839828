"""Runs train jobs: QUEUED rows -> a replica's streaming `train_group` -> events, checkpoints, new versions.

Queued jobs on one backbone are co-batched: up to `max_group` of them train together on one replica, one
frozen forward/backward per step for all (each job keeps its own optimizer, schedule and result). State
lives only in SQL (`bank.jobs` holds every state move): every event and checkpoint is committed as it
arrives, a dead replica's jobs go back to the queue and resume from their last checkpoint (up to
`max_attempts` dispatches). A job runs under this coordinator's lease, renewed by a heartbeat; when a
coordinator dies its leases lapse and any coordinator on the bank (it, restarted, or another) requeues
and resumes the job. A graceful stop checkpoints running jobs and hands them back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import replace

from ray.exceptions import RayActorError

from bank import catalog, datasets
from bank import jobs as jobstore
from bank.writer import BankDB, Tx
from coordinator import logs
from coordinator.errors import root_cause
from coordinator.metrics import Metrics
from coordinator.pool import MAX_RESTARTS, Replica, ReplicaPool
from promptbank_domain import cost
from promptbank_domain.jobs import JobSpec
from promptbank_domain.states import JobState
from workers.protocol import CancelRequest, EventKind, InitLossesRequest, TrainEvent, TrainRequest

log = logging.getLogger("promptbank.coordinator")
NEAREST_CANDIDATES = 64  # stored prompts scored for `init=nearest`
NEAREST_ROWS = 64  # examples of the new task each candidate is scored on
POLL_S = 5.0  # the queue and lapsed leases are checked at least this often (other coordinators' jobs)


class JobScheduler:
    """One asyncio loop that starts queued jobs, in co-batched groups, on replicas free for training, under
    this coordinator's leases (`owner`), and a heartbeat that renews them."""

    def __init__(self, db: BankDB, pool: ReplicaPool, *, owner: str, lease_s: float = 30.0, max_group: int = 4,
                 max_attempts: int = 3, gather_s: float = 1.0, metrics: Metrics | None = None):
        self.db, self.pool, self.owner, self.lease_s = db, pool, owner, lease_s
        self.metrics = metrics or pool.metrics
        self.max_group, self.max_attempts, self.gather_s = max_group, max_attempts, gather_s
        self.poll_s = min(lease_s / 3, POLL_S)  # jobs queued through another coordinator, lapsed leases
        self.changed = asyncio.Condition()  # notified on every persisted job event
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # job id -> the task running its group
        self._open: dict[str, Replica] = {}  # jobs claimed here and not yet ended -> their replica
        self._lost: set[str] = set()  # jobs whose lease passed elsewhere: their events are dropped
        self._draining = False
        self._loop_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="job-scheduler")
        self._beat_task = asyncio.create_task(self._heartbeat(), name="job-leases")
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _loop(self) -> None:
        while not self._draining:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
                await asyncio.sleep(self.gather_s)  # jobs submitted together start together (co-batched)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._pass()
            except Exception:  # noqa: BLE001 - the loop must survive a bad row or a database blip
                log.exception("scheduler pass failed")

    async def _pass(self) -> None:
        running = set(self._open)  # a stalled heartbeat here is not a reason to requeue our own running jobs
        reclaimed = await self.db.run(lambda s: jobstore.reclaim_expired(s, self.max_attempts, keep=running))
        if reclaimed:
            log.info("requeued %d job(s) whose coordinator's lease expired: %s", len(reclaimed), reclaimed)
            await self.notify()
        queued = await self.db.read(lambda s: [(j.id, j.backbone_name, j.spec) for j in jobstore.queued_jobs(s)])
        waiting: dict[str, list[tuple[str, int]]] = {}
        for job_id, backbone, spec in queued:
            if job_id not in self._tasks and backbone in self.pool.backbones:
                arch = self.pool.get(backbone).info.architecture
                waiting.setdefault(backbone, []).append((job_id, cost.step_rows(spec, arch)))
        for backbone, jobs in waiting.items():
            for replica in self.pool.get(backbone).replicas:
                if not jobs:
                    break
                if replica.training or not replica.live:  # one group per live replica at a time
                    continue
                group, jobs = self._group(jobs)
                replica.training.update(group)
                task = asyncio.create_task(self._run(group, replica), name=f"jobs-{'-'.join(group)}")
                for job_id in group:
                    self._tasks[job_id] = task

    def _group(self, jobs: list[tuple[str, int]]) -> tuple[list[str], list[tuple[str, int]]]:
        """The oldest queued job and up to max_group - 1 later ones of like step cost; the others keep their
        places in the queue (the oldest always starts, so no job waits forever behind cheaper ones)."""
        picked, left = [jobs[0]], []
        for job in jobs[1:]:
            if len(picked) < self.max_group and cost.alike([c for _, c in picked], job[1]):
                picked.append(job)
            else:
                left.append(job)
        return [j for j, _ in picked], left

    async def _heartbeat(self) -> None:
        """Renew the leases of the jobs running here; a job whose lease was lost is stopped on its replica."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            mine = set(self._open)
            if not mine:
                continue
            try:
                held = await self.db.run(jobstore.renew_leases, self.owner, mine, self.lease_s)
            except Exception:  # noqa: BLE001 - the next beat retries; the lease has two more beats of slack
                log.exception("renewing job leases failed")
                continue
            for job_id in mine - held:
                if job_id in self._open:  # not ended here meanwhile: another coordinator has it now
                    await self._lose(job_id)

    async def _lose(self, job_id: str) -> None:
        replica = self._open.pop(job_id, None)
        self._lost.add(job_id)
        log.warning("lost the lease of job %s: stopping it here, writing nothing more for it", job_id)
        if replica is not None:
            with contextlib.suppress(Exception):
                await replica.worker.cancel(CancelRequest(job_id))

    async def _run(self, group: list[str], replica: Replica) -> None:
        open_jobs = set(group)
        logs.job.set(",".join(f"jobs/{j}" for j in group))  # this task's log lines name its jobs
        try:
            await self._train(group, replica, open_jobs)
        except RayActorError as exc:  # the replica died: its jobs resume elsewhere from their checkpoints
            log.warning("replica %d died under jobs %s: %s", replica.index, sorted(open_jobs), exc)
            probe = self.pool.died(replica)
            served = self.pool.backbones.get(replica.backbone)  # None: deregistered meanwhile
            live = [r for r in served.replicas if r.live] if served else []
            back = bool(live) or await probe  # another live replica takes the jobs now; else wait (bounded) for this one
            for job_id in open_jobs - self._lost:
                with contextlib.suppress(jobstore.LeaseLost):
                    if back or live:
                        await self.db.run(jobstore.requeue, job_id, "the replica died", self.max_attempts,
                                          owner=self.owner)
                    else:
                        why = (f"replica {replica.index} died and Ray gave up restarting it (max_restarts "
                               f"{MAX_RESTARTS}); no live replica of its backbone is left on this coordinator")
                        await self.db.run(jobstore.finish, job_id, JobState.FAILED, owner=self.owner, error=why)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure ends the open jobs FAILED with a reason
            cause = root_cause(exc)
            log.warning("jobs %s failed: %r", sorted(open_jobs), cause)
            for job_id in open_jobs - self._lost:
                with contextlib.suppress(jobstore.LeaseLost):
                    await self.db.run(jobstore.finish, job_id, JobState.FAILED, owner=self.owner,
                                      error=f"{type(cause).__name__}: {cause}")
        finally:
            for job_id in group:
                replica.training.discard(job_id)
                self._tasks.pop(job_id, None)
                self._open.pop(job_id, None)
                self._lost.discard(job_id)
                self.metrics.train_ended(job_id)
            await self.notify()
            self.wake()

    def _claim(self, s: Tx, job_id: str, replica: Replica, group: int) -> tuple[TrainRequest, JobSpec] | None:
        """Take the job under this coordinator's lease and gather what the worker needs: data, init prompt,
        last checkpoint. None when another coordinator (or a cancel) got there first."""
        mates = f", co-batched with {group - 1} other job(s)" if group > 1 else ""
        started = jobstore.claim(s, job_id, self.owner, self.lease_s, f"on replica {replica.index}{mates}")
        if started is None:
            return None
        job, ckpt = started
        spec = job.spec
        init = spec.init_from
        stored = catalog.version_tensor(s, init) if init and init != "nearest" else None
        request = TrainRequest(job_id=job_id, task=spec.task, config=spec.config,
                               examples=datasets.decode_rows(jobstore.training_data(s, job_id)),
                               init_prompt=stored, resume=ckpt.data if ckpt else None)
        return request, spec

    async def _train(self, group: list[str], replica: Replica, open_jobs: set[str]) -> None:
        requests: list[TrainRequest] = []
        specs: dict[str, JobSpec] = {}
        for job_id in group:
            begun = await self.db.run(self._claim, job_id, replica, len(group))
            if begun is None:
                open_jobs.discard(job_id)
                continue
            self._open[job_id] = replica
            request, spec = begun
            if spec.init_from == "nearest" and request.resume is None:
                init_prompt, how = await self._nearest(request, job_id, replica)
                request = replace(request, init_prompt=init_prompt)
                spec = replace(spec, init=how)
            requests.append(request)
            specs[job_id] = spec
        if not requests:
            return
        log.info("training %s on replica %d of %s", ", ".join(f"jobs/{r.job_id}" for r in requests), replica.index,
                 replica.backbone)
        await self.notify()
        async for ev in replica.worker.train_group(requests):
            if ev.job in self._lost:
                continue
            try:
                ended = await self._persist(ev, specs[ev.job], replica)
            except jobstore.LeaseLost:
                await self._lose(ev.job)
                ended = True
            if ended:
                open_jobs.discard(ev.job)
                self._open.pop(ev.job, None)
            if ev.kind is not EventKind.CHECKPOINT:
                await self.notify()

    async def _persist(self, ev: TrainEvent, spec: JobSpec, replica: Replica) -> bool:
        """Store one event; True when it ended its job."""
        job_id = ev.job
        if ev.kind is EventKind.RESULT:
            lineage = {"job": f"jobs/{job_id}", "data": spec.data_ref, "init": spec.init or spec.config.init}
            published = await self.db.run(lambda s: jobstore.succeed(
                s, job_id, owner=self.owner, prompt=ev.prompt, metrics=ev.metrics, step=ev.step, lineage=lineage,
                aliases=spec.aliases))
            log.info("job jobs/%s %s at step %d", job_id, "succeeded" if published else "ended unpublished", ev.step)
            return True
        if ev.kind is EventKind.CANCELLED and self._draining:  # stopped for the shutdown, not by its user
            why = f"requeued at coordinator shutdown; will resume from step {ev.step}"
            await self.db.run(lambda s: jobstore.release(s, self.owner, [job_id], why))
            return True
        if ev.kind is EventKind.CANCELLED:
            msg = f"cancelled at step {ev.step}; last checkpoint kept"
            await self.db.run(lambda s: jobstore.finish(s, job_id, JobState.CANCELLED, owner=self.owner, message=msg,
                                                        step=ev.step))
            return True
        if ev.kind is EventKind.FAILED:
            await self.db.run(lambda s: jobstore.finish(s, job_id, JobState.FAILED, owner=self.owner, error=ev.error))
            return True
        if ev.kind is EventKind.CHECKPOINT:
            await self.db.run(lambda s: jobstore.save_checkpoint(s, job_id, ev.step, ev.checkpoint, owner=self.owner))
            return False
        if ev.kind is EventKind.PROGRESS:
            self.metrics.train_progress(job_id, replica.backbone, ev.step, ev.examples_per_second)
        message = "stopping early: no better eval metric" if ev.stopped_early else ""
        cancel = await self.db.run(lambda s: jobstore.record_progress(
            s, job_id, ev.kind.value, owner=self.owner, step=ev.step, total_steps=ev.total_steps, loss=ev.loss, metrics=ev.metrics,
            examples_per_second=ev.examples_per_second, eta_seconds=ev.eta_seconds, message=message))
        if cancel:
            await replica.worker.cancel(CancelRequest(job_id))
        return False

    async def _nearest(self, request: TrainRequest, job_id: str, replica: Replica) -> tuple[bytes | None, str]:
        """SPoT-style transfer: the stored prompt on this backbone under which the new task's data scores best."""

        def candidates(s: Tx) -> dict[str, bytes]:
            job = jobstore.get_job(s, job_id)
            return catalog.nearest_candidates(s, job.backbone_name, job.prompt_name, NEAREST_CANDIDATES,
                                              kind=request.config.prompt_kind)

        cands = await self.db.run(candidates)
        if not cands:
            return None, "vocab (nearest: no stored prompt on this backbone)"
        losses = await replica.worker.init_losses(InitLossesRequest(request.task, request.examples[:NEAREST_ROWS],
                                                                    cands, kind=request.config.prompt_kind))
        if not losses:
            return None, "vocab (nearest: no stored prompt fits)"
        best = min(losses, key=losses.__getitem__)
        return cands[best], f"nearest:{best} (loss {losses[best]:.4f} over {len(losses)} candidates)"

    async def abandon(self, replicas: Iterable[Replica]) -> None:
        """Stop driving the jobs on these replicas, whose backbone is being deregistered (the bank has ended the
        jobs): their tasks are cancelled and write nothing more, before the replicas are stopped."""
        jobs = {job_id for r in replicas for job_id in r.training}
        tasks = {self._tasks[job_id] for job_id in jobs if job_id in self._tasks}
        self._lost |= jobs
        for job_id in jobs:
            self._open.pop(job_id, None)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def cancel(self, job_id: str) -> None:
        """Ask the replica running the job to stop at its next step (the DB flag is already set; a job running
        under another coordinator sees the flag at its next progress event)."""
        replica = self._open.get(job_id)
        if replica is not None:
            await replica.worker.cancel(CancelRequest(job_id))

    async def drain(self, timeout: float) -> None:
        """A graceful stop: take no new jobs, ask each running job for a last checkpoint (its replica stops it at
        the next step), and hand it back to the queue, to resume there on the next coordinator. A job that does
        not stop within `timeout` is handed back from its previous checkpoint."""
        self._draining = True
        if self._loop_task:
            self._loop_task.cancel()
        for job_id, replica in list(self._open.items()):
            with contextlib.suppress(Exception):
                await replica.worker.cancel(CancelRequest(job_id))
        running = set(self._tasks.values())
        if running:
            await asyncio.wait(running, timeout=timeout)
        left = list(self._open)
        for t in running:
            t.cancel()
        if left:
            why = "requeued at coordinator shutdown; will resume from its last checkpoint"
            with contextlib.suppress(Exception):
                await self.db.run(lambda s: jobstore.release(s, self.owner, left, why))
        if self._beat_task:
            self._beat_task.cancel()
        await self.notify()
