"""The micro-batcher alone: a fake pool stands in for the replicas (no Ray, no server), so each rule of the
batching policy is seen in the batches it forms (in the spirit of Ray Serve's tests/unit/test_batching.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from coordinator.batcher import BatchLimits, MicroBatcher
from promptbank_api.errors import InvalidArgument, Unavailable
from promptbank_domain.task import TaskSpec
from workers.protocol import ClassifyBatch

T = TypeVar("T")
TASKS = {"a": TaskSpec(labels=("neg", "pos")), "b": TaskSpec(labels=("x", "y", "z"))}
SLOW = 10_000.0  # ms: a batch that waits this long is closed by a cap, not by the wait


def logits(key: str, text: str) -> list[float]:
    """What the fake replica answers for a row: names the row, so a result in the wrong place shows."""
    return [float(ord(key)), float(text)]


class FakePool:
    """Records each batch; `gate` holds batches until set; `fail(batch)` may return an error to raise."""

    def __init__(self, replicas: int = 1, fail: Callable[[ClassifyBatch], Exception | None] = lambda b: None):
        self.replicas, self.fail = replicas, fail
        self.batches: list[ClassifyBatch] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = self.most_running = 0

    def replica_count(self, name: str) -> int:
        assert name == "bb"
        return self.replicas

    async def classify(self, name: str, batch: ClassifyBatch) -> list[list[float]]:
        self.batches.append(batch)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
            err = self.fail(batch)
            if err is not None:
                raise err
            return [logits(k, t) for k, t in batch.rows]
        finally:
            self.running -= 1


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), timeout=30))


async def batcher(pool: FakePool, **limits: Any) -> MicroBatcher:
    return MicroBatcher(pool, "bb", BatchLimits(**limits))


def submit(b: MicroBatcher, rows: list[tuple[str, str]], tokens: int = 1) -> asyncio.Task[list[list[float]]]:
    """One request's rows (prompt key, text), submitted as a caller would, as a task of its own."""
    prompts = {k: k.encode() for k, _ in rows}
    return asyncio.ensure_future(b.submit(rows, prompts, {k: TASKS[k] for k in prompts}, tokens))


def rows_of(n: int, key: str = "a", start: int = 0) -> list[tuple[str, str]]:
    return [(key, str(start + i)) for i in range(n)]


async def answered(task: Awaitable[list[list[float]]], rows: list[tuple[str, str]]) -> None:
    assert await task == [logits(k, t) for k, t in rows]


def test_batches_close_at_max_rows_with_whole_requests() -> None:
    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_rows=4, max_wait_ms=SLOW)
        reqs = [rows_of(2, start=10 * i) for i in range(5)]
        tasks = [submit(b, r) for r in reqs]
        for t, r in zip(tasks[:4], reqs[:4], strict=True):
            await answered(t, r)
        assert [len(x.rows) for x in pool.batches] == [4, 4]  # two requests each, closed by rows, not the wait
        assert pool.batches[0].rows == reqs[0] + reqs[1]
        assert not tasks[4].done()  # the fifth waits for company
        await b.close()

    run(go)


def test_a_request_that_would_pass_max_rows_waits_for_the_next_batch() -> None:
    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_rows=4, max_wait_ms=50)
        first, second = rows_of(3), rows_of(2, start=100)
        await asyncio.gather(answered(submit(b, first), first), answered(submit(b, second), second))
        assert [x.rows for x in pool.batches] == [first, second]  # a request is never split over batches
        await b.close()

    run(go)


def test_batches_close_at_max_tokens() -> None:
    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_rows=64, max_tokens=100, max_wait_ms=SLOW)
        reqs = [rows_of(1, start=i) for i in range(4)]
        tasks = [submit(b, r, tokens=50) for r in reqs]
        for t, r in zip(tasks, reqs, strict=True):
            await answered(t, r)
        assert [len(x.rows) for x in pool.batches] == [2, 2]
        await b.close()

    run(go)


def test_a_lone_request_waits_max_wait_for_company_then_goes() -> None:
    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_rows=64, max_wait_ms=200)
        t0 = time.monotonic()
        lone = submit(b, rows_of(1))
        await asyncio.sleep(0.1)
        assert not pool.batches  # still waiting for company
        late = submit(b, rows_of(1, start=1))  # arrives within the wait: rides along
        await asyncio.gather(lone, late)
        waited = time.monotonic() - t0
        assert 0.19 <= waited < 2.0 and len(pool.batches) == 1 and len(pool.batches[0].rows) == 2
        b.limits = BatchLimits(max_rows=64, max_wait_ms=0)
        t0 = time.monotonic()
        await answered(submit(b, rows_of(1, start=7)), rows_of(1, start=7))
        assert time.monotonic() - t0 < 0.15  # no wait: it goes at once
        await b.close()

    run(go)


def test_rows_of_many_requests_and_tasks_share_a_batch_and_each_caller_gets_its_own() -> None:
    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_rows=64, max_wait_ms=100)
        reqs = [[("a", "1"), ("b", "2")], [("b", "3")], [("a", "4"), ("a", "5"), ("b", "6")]]
        await asyncio.gather(*[answered(submit(b, r), r) for r in reqs])
        assert len(pool.batches) == 1
        sent = pool.batches[0]
        assert sent.rows == [r for req in reqs for r in req]
        assert sent.tasks == TASKS and sent.prompts == {"a": b"a", "b": b"b"}  # every row's task and prompt
        await b.close()

    run(go)


def test_a_request_larger_than_max_rows_goes_whole_and_alone_with_the_forward_caps() -> None:
    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_rows=4, max_wait_ms=50, forward_positions=300)
        small, big = rows_of(1), rows_of(10, start=100)
        await asyncio.gather(answered(submit(b, small), small), answered(submit(b, big), big))
        assert [x.rows for x in pool.batches] == [small, big]  # not split, not merged
        # the replica cuts the big one into forwards of at most 4 rows and 300 padded positions
        assert {(x.max_rows, x.max_positions) for x in pool.batches} == {(4, 300)}
        await b.close()

    run(go)


def test_the_forward_caps_follow_the_policy() -> None:
    """A change to BatchLimits changes what a replica may put in one forward (it has no caps of its own)."""

    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_wait_ms=0)
        await submit(b, rows_of(1))
        b.limits = BatchLimits(max_rows=8, max_wait_ms=0, forward_positions=512)
        await submit(b, rows_of(1))
        assert [(x.max_rows, x.max_positions) for x in pool.batches] == [(64, 4096), (8, 512)]
        await b.close()

    run(go)
    default = ClassifyBatch([], {}, {})  # in-process callers' caps are the policy's defaults
    assert (default.max_rows, default.max_positions) == (BatchLimits().max_rows, BatchLimits().forward_positions)


def test_a_cancelled_caller_is_dropped_before_its_forward_and_its_mates_are_answered() -> None:
    async def go() -> None:
        pool = FakePool()
        b = await batcher(pool, max_rows=64, max_wait_ms=200)
        keep1, gone, keep2 = rows_of(1), rows_of(2, start=10), rows_of(1, start=20)
        t1, tg, t2 = submit(b, keep1), submit(b, gone), submit(b, keep2)
        await asyncio.sleep(0.05)
        tg.cancel()
        await asyncio.gather(answered(t1, keep1), answered(t2, keep2))
        assert [x.rows for x in pool.batches] == [keep1 + keep2]
        assert b.dropped_rows == 2 and b.rows == 2
        await b.close()

    run(go)


def test_a_caller_that_leaves_during_its_forward_is_not_answered_and_the_rest_are() -> None:
    async def go() -> None:
        pool = FakePool()
        pool.gate.clear()
        b = await batcher(pool, max_rows=64, max_wait_ms=50)
        keep, gone = rows_of(1), rows_of(1, start=5)
        tk, tg = submit(b, keep), submit(b, gone)
        while not pool.batches:
            await asyncio.sleep(0.01)
        tg.cancel()
        pool.gate.set()
        await answered(tk, keep)
        assert tg.cancelled() and len(pool.batches) == 1
        await b.close()

    run(go)


def test_a_failing_request_fails_alone_and_its_mates_are_answered() -> None:
    def bad_text(batch: ClassifyBatch) -> Exception | None:
        return InvalidArgument("label words collide") if any(t == "666" for _, t in batch.rows) else None

    async def go() -> None:
        pool = FakePool(fail=bad_text)
        b = await batcher(pool, max_rows=64, max_wait_ms=100)
        good1, bad, good2 = rows_of(2), [("b", "666")], rows_of(1, key="b", start=3)
        t1, tb, t2 = submit(b, good1), submit(b, bad), submit(b, good2)
        await asyncio.gather(answered(t1, good1), answered(t2, good2))
        with pytest.raises(InvalidArgument, match="collide"):
            await tb
        assert [x.rows for x in pool.batches] == [good1 + bad + good2, good1, bad, good2]  # then one by one
        assert b.split_retries == 1 and b.batches == 2
        await b.close()

    run(go)


def test_no_replica_fails_every_caller_of_the_batch_at_once() -> None:
    async def go() -> None:
        pool = FakePool(fail=lambda batch: Unavailable("backbone 'bb' has no live replica"))
        b = await batcher(pool, max_rows=64, max_wait_ms=100)
        tasks = [submit(b, rows_of(1, start=i)) for i in range(3)]
        for t in tasks:
            with pytest.raises(Unavailable, match="no live replica"):
                await t
        assert len(pool.batches) == 1 and b.split_retries == 0  # not retried one by one
        await b.close()

    run(go)


def test_at_most_two_batches_ride_per_replica() -> None:
    async def go() -> None:
        for replicas in (1, 2):
            pool = FakePool(replicas=replicas)
            pool.gate.clear()
            b = await batcher(pool, max_rows=1, max_wait_ms=0)
            tasks = [submit(b, rows_of(1, start=i)) for i in range(6)]
            await asyncio.sleep(0.2)
            assert len(pool.batches) == 2 * replicas  # the rest queue in the batcher
            pool.gate.set()
            await asyncio.gather(*tasks)
            assert pool.most_running == 2 * replicas and len(pool.batches) == 6
            await b.close()

    run(go)


def test_limits_refuse_nonsense() -> None:
    for bad in ({"max_rows": 0}, {"max_tokens": 0}, {"max_wait_ms": -1}, {"forward_positions": 0}):
        with pytest.raises(ValueError, match="invalid batch limits"):
            BatchLimits(**bad)
