"""Micro-batching across requests and tasks: rows waiting for one backbone ride in one forward pass.

Each `submit` is one request's rows for one backbone. A loop per backbone forms a batch when a replica
slot is free: whole requests in arrival order, up to `max_rows` rows / `max_tokens` estimated tokens,
waiting at most `max_wait_ms` after the oldest row. Results are split back per request. If a batch fails,
its requests are retried one by one, so a bad request fails alone; a request whose caller has gone
(cancelled, deadline) is dropped before dispatch and its result discarded after.

`BatchLimits` is the whole batching policy: the batch a replica receives carries its forward caps
(`ClassifyBatch.max_rows`, `max_positions`), and the replica only chooses where to cut within them (by
length, with the price of a forward on its device), so a change here changes the forwards' shapes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from coordinator.metrics import Metrics
from promptbank_api.errors import Unavailable
from promptbank_domain.task import TaskSpec
from workers.protocol import ClassifyBatch

log = logging.getLogger("promptbank.coordinator")


@dataclass(frozen=True)
class BatchLimits:
    """How rows are batched: what a batch holds, and what each forward of it on a replica may hold."""

    max_rows: int = 64  # rows per batch (whole requests; one larger request goes alone) and per forward
    max_tokens: int = 16384  # estimated tokens per batch (whole requests)
    max_wait_ms: float = 5.0  # how long the oldest row waits for company
    forward_positions: int = 4096  # padded positions (rows x longest) per forward; a longer row goes alone

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_tokens < 1 or self.max_wait_ms < 0 or self.forward_positions < 1:
            raise ValueError(f"invalid batch limits {self}")

    def batch(self, rows: list[tuple[str, str]], prompts: dict[str, bytes], tasks: dict[str, TaskSpec]
              ) -> ClassifyBatch:
        """The batch a replica runs, carrying these limits' forward caps."""
        return ClassifyBatch(rows, prompts, tasks, max_rows=self.max_rows, max_positions=self.forward_positions)


class Replicas(Protocol):
    """What the batcher needs of the replica pool (coordinator/pool.py ReplicaPool; a fake one in unit tests)."""

    def replica_count(self, name: str) -> int: ...

    async def classify(self, name: str, batch: ClassifyBatch) -> list[list[float]]: ...


@dataclass
class _Pending:
    rows: list[tuple[str, str]]  # (prompt sha, text)
    prompts: dict[str, bytes]
    tasks: dict[str, TaskSpec]
    tokens: int
    future: asyncio.Future[list[list[float]]]
    arrived: float = field(default_factory=time.monotonic)


def estimate_tokens(text: str, n_virtual: int) -> int:
    """Cheap upper-ish estimate (no tokenizer in the coordinator): ~4 characters per token."""
    return n_virtual + len(text) // 4 + 2


class MicroBatcher:
    def __init__(self, pool: Replicas, backbone: str, limits: BatchLimits, metrics: Metrics | None = None):
        self.pool, self.backbone, self.limits = pool, backbone, limits
        m = metrics or Metrics()
        self._m_queue, self._m_wait = m.queue_rows.labels(backbone), m.queue_wait.labels(backbone)
        self._m_rows, self._m_fill = m.batch_rows.labels(backbone), m.batch_fill.labels(backbone)
        self._m_ok, self._m_failed = m.batches.labels(backbone, "ok"), m.batches.labels(backbone, "error")
        self._m_dropped, self._m_split = m.dropped_rows.labels(backbone), m.split_retries.labels(backbone)
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._busy = 0  # batches in flight: at most two per replica (the count follows autoscaling)
        self._freed = asyncio.Event()
        self.waits: deque[tuple[float, float]] = deque(maxlen=4096)  # (when, queue wait s) per request dispatched
        self._task = asyncio.create_task(self._loop(), name=f"batcher-{backbone}")
        self._inflight: set[asyncio.Task[None]] = set()
        self.batches = 0  # counters for tests and logs
        self.rows = 0
        self.split_retries = 0  # batches that failed and were retried request by request
        self.dropped_rows = 0  # rows of callers that gave up (deadline, cancel) before their forward

    async def submit(
        self, rows: list[tuple[str, str]], prompts: dict[str, bytes], tasks: dict[str, TaskSpec], tokens: int
    ) -> list[list[float]]:
        fut: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rows, prompts, tasks, tokens, fut))
        self._m_queue.inc(len(rows))
        self._arrived.set()
        return await fut  # a cancelled caller cancels `fut`; the loop then skips or discards it

    async def _loop(self) -> None:
        while True:
            while self._busy >= 2 * max(1, self.pool.replica_count(self.backbone)):
                self._freed.clear()
                await self._freed.wait()
            self._busy += 1
            try:
                batch = await self._collect()
            except BaseException:
                self._release()
                raise
            t = asyncio.create_task(self._run(batch))
            self._inflight.add(t)
            t.add_done_callback(self._inflight.discard)

    async def _collect(self) -> list[_Pending]:
        """Wait for rows, then up to max_wait after the oldest for the batch to fill."""
        while True:
            while self._queue and self._queue[0].future.done():
                self._drop(self._queue.popleft())
            if self._queue:
                break
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._queue[0].arrived + self.limits.max_wait_ms / 1000
        while not self._full() and (left := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=left)
            except TimeoutError:
                break
        batch: list[_Pending] = []
        rows = tokens = 0
        while self._queue:
            p = self._queue[0]
            if p.future.done():
                self._drop(self._queue.popleft())
                continue
            if batch and (rows + len(p.rows) > self.limits.max_rows or tokens + p.tokens > self.limits.max_tokens):
                break
            batch.append(self._queue.popleft())
            self._m_queue.dec(len(p.rows))
            self._m_wait.observe(time.monotonic() - p.arrived)
            rows, tokens = rows + len(p.rows), tokens + p.tokens
        return batch

    def _drop(self, p: _Pending) -> None:
        """A caller that gave up before its forward: its rows never reach a replica."""
        self.dropped_rows += len(p.rows)
        self._m_queue.dec(len(p.rows))
        self._m_dropped.inc(len(p.rows))

    def _full(self) -> bool:
        live = [p for p in self._queue if not p.future.done()]
        return (sum(len(p.rows) for p in live) >= self.limits.max_rows
                or sum(p.tokens for p in live) >= self.limits.max_tokens)

    def _release(self) -> None:
        self._busy -= 1
        self._freed.set()

    def capacity_changed(self) -> None:
        """A replica was added or removed: re-read how many batches may be in flight."""
        self._freed.set()

    def queued_wait(self, window_s: float) -> float:
        """Mean queue wait (s) of the requests dispatched in the last `window_s`, counting the requests still
        queued at their age so far: the autoscaler's signal."""
        now = time.monotonic()
        recent = [w for t, w in self.waits if now - t <= window_s]
        recent += [now - p.arrived for p in self._queue if not p.future.done()]
        return sum(recent) / len(recent) if recent else 0.0

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            if batch:
                now = time.monotonic()
                self.waits.extend((now, now - p.arrived) for p in batch)
                await self._dispatch(batch)
        finally:
            self._release()

    async def _dispatch(self, batch: list[_Pending]) -> None:
        rows = [r for p in batch for r in p.rows]
        prompts = {k: v for p in batch for k, v in p.prompts.items()}
        tasks = {k: v for p in batch for k, v in p.tasks.items()}
        try:
            out = await self.pool.classify(self.backbone, self.limits.batch(rows, prompts, tasks))
        except Exception as exc:  # noqa: BLE001 - isolate the failing request(s)
            self._m_failed.inc()
            if len(batch) == 1 or isinstance(exc, Unavailable):  # no replica: every request in it gets that
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                return
            log.warning("batch of %d requests failed (%r); retrying them one by one", len(batch), exc)
            self.split_retries += 1
            self._m_split.inc()
            await asyncio.gather(*[self._dispatch([p]) for p in batch])
            return
        self.batches += 1
        self.rows += len(rows)
        self._m_ok.inc()
        self._m_rows.observe(len(rows))
        self._m_fill.observe(len(rows) / self.limits.max_rows)
        i = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result(out[i : i + len(p.rows)])
            i += len(p.rows)

    async def close(self) -> None:
        log.info("batcher %s: %d batches, %d rows, %d split retries", self.backbone, self.batches, self.rows,
                 self.split_retries)
        self._task.cancel()
        for t in list(self._inflight):
            t.cancel()
        self._m_queue.set(0)
