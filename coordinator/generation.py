"""Generate streams from the coordinator's side: time each stream (time to first token, inter-token latency,
tokens), tell the replica when its caller went (the row leaves its running batch at the next step), and poll
the replicas' engines (running and queued rows, queue waits) for the metrics and the autoscaler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from coordinator.gen_metrics import GenerationMetrics
from coordinator.worker_client import WorkerClient
from workers.protocol import CancelGenerationRequest, GeneratePiece, GenerateRequest, GenerationStats


class Pool(Protocol):
    """What the monitor reads of coordinator/pool.py's ReplicaPool (which owns the monitor)."""

    backbones: dict[str, Any]

log = logging.getLogger("promptbank.coordinator")
POLL_S = 1.0  # replicas' engine stats are read this often
CANCEL_TIMEOUT_S = 10.0


def unique_id(request_id: str) -> str:
    """The id a row runs under on its replica: the caller's (for the logs) made unique, so a cancel names one."""
    return f"{request_id or 'generate'}~{uuid.uuid4().hex[:16]}"


async def stream(worker: WorkerClient, backbone: str, req: GenerateRequest, m: GenerationMetrics
                 ) -> AsyncGenerator[GeneratePiece, None]:
    """The replica's pieces of `req`, timed. When the consumer stops before the last piece (its caller went or
    its deadline passed: the stream is closed or cancelled), the replica is told to drop the row."""
    began = time.perf_counter()
    last: float | None = None
    try:
        async for piece in worker.generate(req):
            now = time.perf_counter()
            if piece.text or piece.finish_reason:
                if last is None:
                    m.ttft.labels(backbone).observe(now - began)
                elif piece.text:
                    m.inter_token.labels(backbone).observe(now - last)
                last = now
            if piece.finish_reason is not None:
                m.tokens.labels(backbone).inc(piece.generated_tokens)
                m.finished.labels(backbone, piece.finish_reason).inc()
            yield piece
    except (GeneratorExit, asyncio.CancelledError):
        cancel(worker, backbone, req.request_id, m)
        raise


_pending: set[asyncio.Task[None]] = set()


def cancel(worker: WorkerClient, backbone: str, request_id: str, m: GenerationMetrics) -> None:
    """Send the cancel now (the Ray call leaves at once) and count what the replica answered: "removed" (the row
    was queued or running and leaves at its next step) or "not_running" (finished, or not arrived yet: it will
    end at once when it does)."""
    ref = worker.cancel_generation(CancelGenerationRequest(request_id))

    async def outcome() -> None:
        try:
            removed = await asyncio.wait_for(ref, CANCEL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a dead replica drops its rows anyway
            log.info("cancel of generation %s: no answer (%r)", request_id, exc)
            m.cancels.labels(backbone, "no_answer").inc()
            return
        m.cancels.labels(backbone, "removed" if removed else "not_running").inc()

    task = asyncio.get_running_loop().create_task(outcome())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


class GenerationMonitor:
    """Polls each generative backbone's replicas for their engine's state every POLL_S."""

    def __init__(self, pool: Pool, m: GenerationMetrics):
        self.pool, self.m = pool, m
        self.state: dict[str, GenerationStats] = {}  # backbone -> the sum over its replicas, last poll
        self.waited: dict[str, float] = {}  # backbone -> longest queue wait seen in the last poll (s)
        self._tokens: dict[tuple[str, int], tuple[float, int]] = {}  # (backbone, replica) -> (time, tokens)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="generation-monitor")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            with contextlib.suppress(Exception):
                await self.poll()

    async def poll(self) -> None:
        """Read every live replica of each generative backbone once; update the gauges and queue waits."""
        for name, bb in list(self.pool.backbones.items()):
            if bb.info.architecture not in ("causal_lm", "seq2seq"):
                continue
            reps = [r for r in bb.replicas if r.live]
            got = await asyncio.gather(*[asyncio.wait_for(r.worker.generation_stats(), POLL_S * 5) for r in reps],
                                       return_exceptions=True)
            total = GenerationStats()
            rate, waited = 0.0, 0.0
            now = time.monotonic()
            for r, s in zip(reps, got, strict=True):
                if not isinstance(s, GenerationStats):
                    continue
                for w in s.queue_waits:
                    self.m.queue_wait.labels(name).observe(w)
                waited = max(waited, s.oldest_queued_s, *s.queue_waits)
                seen = self._tokens.get((name, r.index))
                if seen is not None and s.generated_tokens >= seen[1] and now > seen[0]:
                    rate += (s.generated_tokens - seen[1]) / (now - seen[0])
                self._tokens[(name, r.index)] = (now, s.generated_tokens)
                total = GenerationStats(running=total.running + s.running, queued=total.queued + s.queued,
                                        cached_tokens=total.cached_tokens + s.cached_tokens,
                                        generated_tokens=total.generated_tokens + s.generated_tokens,
                                        cancelled=total.cancelled + s.cancelled)
            self.state[name], self.waited[name] = total, waited
            self.m.running.labels(name).set(total.running)
            self.m.queued.labels(name).set(total.queued)
            self.m.cached_tokens.labels(name).set(total.cached_tokens)
            self.m.tokens_per_second.labels(name).set(rate)
            self.m.removed.labels(name).set(total.cancelled)
