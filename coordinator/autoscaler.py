"""Replica autoscaling per backbone, between --replicas and --max-replicas, from the micro-batcher's queue and
the replicas' generation queues.

Every second: a backbone whose requests waited `scale_up_wait_ms` on average over the last second (rows
queue when every replica already has two batches in flight), or one whose generations waited that long to join
a replica's running batch (coordinator/generation.py polls the replicas), gets one more replica, one at a time; on a Ray
cluster with an autoscaler a replica that needs a GPU no node has makes Ray add a node. A replica that has
served nothing (no batch, no job) for `scale_down_after_s` is removed, newest first, down to --replicas.
Removing waits for idleness, so no call or job is ever cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from coordinator.config import ServerConfig
from coordinator.inference_service import InferenceService
from coordinator.pool import ReplicaPool

log = logging.getLogger("promptbank.coordinator")
TICK_S = 1.0


class Autoscaler:
    def __init__(self, pool: ReplicaPool, inference: InferenceService, config: ServerConfig):
        self.pool, self.inference, self.config = pool, inference, config
        self.grown = 0  # counters for logs and tests
        self.shrunk = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for name in list(self.pool.backbones):
                if name not in self.pool.backbones:  # deregistered during this tick
                    continue
                try:
                    await self.step(name)
                except Exception:  # noqa: BLE001 - a failed grow is logged; the next tick tries again
                    log.exception("autoscaling backbone %s failed", name)

    async def step(self, name: str) -> None:
        bb = self.pool.get(name)
        floor, ceiling = bb.spec.replicas, max(self.config.max_replicas, bb.spec.replicas)
        batcher = self.inference.batchers.get(name)
        wait = batcher.queued_wait(TICK_S) if batcher is not None else 0.0
        queued = self.pool.generation.waited.get(name, 0.0)  # Generate: the longest wait in a replica's queue
        if max(wait, queued) * 1000 >= self.config.scale_up_wait_ms and len(bb.replicas) < ceiling:
            what = "requests waited %.0f ms on average" if wait >= queued else "generations waited %.0f ms to join"
            log.info("backbone %s: " + what + "; adding a replica", name, max(wait, queued) * 1000)
            await self.pool.grow(name)
            self.grown += 1
            if batcher is not None:
                batcher.capacity_changed()
            return
        now = time.monotonic()
        idle = [r for r in bb.replicas if r.live and not r.outstanding and not r.training
                and now - r.last_used >= self.config.scale_down_after_s]
        if idle and len(bb.replicas) > floor:
            self.pool.shrink(name, max(idle, key=lambda r: r.index))
            self.shrunk += 1
