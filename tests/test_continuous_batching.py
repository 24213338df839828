"""Continuous batching of Generate (workers/engine.py): every request's stream in a mixed, continuously batched
run equals its stream when it runs alone through the one-sequence path (fp32, greedy: token for token), for
input, deep and bare rows of different lengths joining and leaving at different steps; sampling is per row."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import torch

from bank.codec import encode_prompt, sha256_hex
from promptbank_api.errors import ResourceExhausted
from promptbank_kinds import DEEP, Row
from workers.backbone import FrozenBackbone
from workers.engine import Engine
from workers.generate import generate
from workers.protocol import GeneratePiece, GenerateRequest, GenerationSettings
from workers.soft_prompt import RowPrompt

TEXTS = ["the weather today is", "hello there my friend how are you doing on this fine morning", "a",
         "one two three four five six seven", "why", "the cat sat on the mat and then it"]


@pytest.fixture(scope="module")
def bb(tiny_causal_lm: str) -> FrozenBackbone:
    return FrozenBackbone(tiny_causal_lm)


@pytest.fixture(scope="module")
def prompts(bb: FrozenBackbone) -> list[RowPrompt | None]:
    """Input prompts of 4 and 9 vectors, deep prompts of 3 and 7 positions, and bare rows."""
    assert bb.deep is not None
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4, bb.hidden_size, generator=g), Row(torch.randn(3, bb.deep.width, generator=g) * 2, DEEP),
            None, Row(torch.randn(7, bb.deep.width, generator=g) * 2, DEEP), torch.randn(9, bb.hidden_size, generator=g),
            None]


def req(text: str, n: int, rid: str = "", **kw: object) -> GenerateRequest:
    return GenerateRequest("", {}, text, max_new_tokens=n, request_id=rid, **kw)  # type: ignore[arg-type]


def alone(bb: FrozenBackbone, prompt: RowPrompt | None, r: GenerateRequest) -> list[GeneratePiece]:
    return list(generate(bb, prompt, r.text, r.max_new_tokens, r.temperature, r.seed, top_k=r.top_k, top_p=r.top_p,
                         stop=r.stop))


def text(pieces: list[GeneratePiece]) -> str:
    return "".join(p.text for p in pieces)


def tokens_of(pieces: list[GeneratePiece]) -> list[str]:
    """Non-empty pieces in order: one per generated token here (the tiny vocabulary's words need no holding)."""
    return [p.text for p in pieces if p.text]


class Gate:
    """Let the engine's decode steps run only when the test says (to join rows at chosen steps)."""

    def __init__(self, engine: Engine):
        self.sem, self.engine, self.done = threading.Semaphore(0), engine, 0
        inner = engine._step

        def gated() -> None:
            self.sem.acquire()
            inner()
            self.done += 1
            self.check(engine)

        engine._step = gated  # type: ignore[method-assign]
        self.seen_cells: list[int] = []
        self.seen_rows: list[int] = []

    def check(self, engine: Engine) -> None:
        self.seen_cells.append(engine.slab.cells())
        self.seen_rows.append(len(engine.running))

    def run(self, steps: int, timeout: float = 60) -> None:
        """Run `steps` more decode steps and wait until they are done."""
        target = self.done + steps
        self.sem.release(steps)
        end = time.monotonic() + timeout
        while self.done < target:
            assert time.monotonic() < end, "the engine stopped stepping"
            time.sleep(0.002)

    def free(self) -> None:
        self.sem.release(100_000)


def test_a_mixed_continuously_batched_run_equals_each_request_alone(bb: FrozenBackbone,
                                                                     prompts: list[RowPrompt | None]) -> None:
    """Input, deep and bare rows of different text and prefix lengths; three join at step 0, three at step 3
    and one at step 7; they leave at different steps (max_new_tokens from 5 to 30, one ends at a stop string)."""
    greedy_first = text(alone(bb, prompts[0], req(TEXTS[0], 30)))
    stop = greedy_first[len(greedy_first) // 2: len(greedy_first) // 2 + 4]
    reqs = [req(TEXTS[0], 30, stop=(stop,)), req(TEXTS[1], 12), req(TEXTS[2], 20), req(TEXTS[3], 5),
            req(TEXTS[4], 25), req(TEXTS[5], 9), req(TEXTS[1], 17)]
    rows = [prompts[0], prompts[1], prompts[2], prompts[3], prompts[4], prompts[5], prompts[3]]
    engine = Engine(bb, GenerationSettings())
    gate = Gate(engine)
    streams: list[Iterator[GeneratePiece]] = [engine.submit(r, p) for r, p in zip(reqs[:3], rows[:3], strict=True)]
    gate.run(3)
    assert len(engine.running) == 3, "the first rows should still be running when the next join"
    streams += [engine.submit(r, p) for r, p in zip(reqs[3:6], rows[3:6], strict=True)]
    gate.run(4)
    assert len(engine.running) >= 5
    streams.append(engine.submit(reqs[6], rows[6]))
    gate.free()
    got = [list(s) for s in streams]
    assert max(gate.seen_rows) == 6  # the 5-token row left at the step the last one joined
    reasons = set()
    for r, p, out in zip(reqs, rows, got, strict=True):
        expected = alone(bb, p, r)
        assert tokens_of(out) == tokens_of(expected), f"{r.text!r} under {type(p).__name__}: the batch changed it"
        assert text(out) == text(expected)
        last = out[-1]
        assert (last.finish_reason, last.prompt_tokens, last.generated_tokens) == (
            expected[-1].finish_reason, expected[-1].prompt_tokens, expected[-1].generated_tokens)
        assert all(x.finish_reason is None for x in out[:-1])
        reasons.add(last.finish_reason)
    assert got[0][-1].finish_reason == "stop" and stop not in text(got[0])
    assert text(got[0]) == greedy_first[: greedy_first.index(stop)]
    assert "length" in reasons
    gens = sorted(o[-1].generated_tokens for o in got)
    assert len(set(gens)) >= 5, f"rows should leave at different steps: {gens}"
    assert engine.stats().running == 0 and engine.slab.kv is None  # all left; the slab is freed
    engine.close()


def test_sampling_is_per_row_and_seeded(bb: FrozenBackbone, prompts: list[RowPrompt | None]) -> None:
    engine = Engine(bb, GenerationSettings())
    hot = dict(temperature=5.0, seed=7)

    def batch(reqs: list[GenerateRequest], mixed: bool = False) -> list[str]:
        """One run of `reqs` together, all under the first prompt (or under each prompt in turn: `mixed`)."""
        streams = [engine.submit(r, prompts[i % len(prompts) if mixed else 0]) for i, r in enumerate(reqs)]
        return [text(list(s)) for s in streams]

    solo = batch([req(TEXTS[0], 10, **hot)])[0]
    mates = [req(TEXTS[i], 8 + i, temperature=1.0 + i, seed=i) for i in range(1, 5)]
    crowded = batch([req(TEXTS[0], 10, **hot), *mates], mixed=True)
    assert crowded[0] == solo, "a row's samples changed with its batch mates"
    assert solo == text(alone(bb, prompts[0], req(TEXTS[0], 10, **hot))), "the two paths draw differently"
    seeds = batch([req(TEXTS[0], 10, temperature=5.0, seed=s) for s in range(4)])
    assert len(set(seeds)) == 4, f"different seeds gave the same text: {seeds}"
    greedy = batch([req(TEXTS[0], 10)])[0]
    assert greedy not in seeds, "sampling gave the greedy text: the temperature was ignored"
    assert batch([req(TEXTS[0], 10, temperature=5.0, seed=s, top_k=1) for s in range(3)]) == [greedy] * 3
    assert batch([req(TEXTS[0], 10, temperature=5.0, seed=s, top_p=1e-6) for s in range(3)]) == [greedy] * 3
    wide = batch([req(TEXTS[0], 10, temperature=5.0, seed=s, top_k=50) for s in range(3)])
    assert wide != [greedy] * 3
    engine.close()


def test_stop_strings_end_the_stream_before_them_and_never_show_a_part(bb: FrozenBackbone) -> None:
    engine = Engine(bb, GenerationSettings())
    full = text(list(engine.submit(req(TEXTS[3], 20), None)))
    assert len(full) > 12
    for stop in (full[5:9], full[9:10], full[len(full) - 3:] + "zz"):
        pieces = list(engine.submit(req(TEXTS[3], 20, stop=("no such text", stop)), None))
        shown = ""
        for p in pieces:
            shown += p.text
            assert stop not in shown
        if stop in full:
            assert shown == full[: full.index(stop)] and pieces[-1].finish_reason == "stop"
        else:  # a held-back possible start of the stop string is shown at the end after all
            assert shown == full and pieces[-1].finish_reason == "length"
    engine.close()


def test_caps_queue_rows_fifo_and_bound_the_cache(bb: FrozenBackbone, prompts: list[RowPrompt | None]) -> None:
    cap = 3 * 64
    engine = Engine(bb, GenerationSettings(max_seqs=2, max_cached_tokens=cap))
    gate = Gate(engine)
    reqs = [req(TEXTS[i], 6 + 3 * i) for i in range(5)]
    streams = [engine.submit(r, prompts[i]) for i, r in enumerate(reqs)]
    gate.run(1)
    end = time.monotonic() + 30  # the loop admits what waits before its next (gated) step: wait for that
    while (engine.stats().running, engine.stats().queued) != (2, 3) and time.monotonic() < end:
        time.sleep(0.005)
    s = engine.stats()
    assert (s.running, s.queued) == (2, 3)  # the cap holds: two run, three wait in order
    gate.free()
    got = [list(x) for x in streams]
    for i, (r, out) in enumerate(zip(reqs, got, strict=True)):
        assert tokens_of(out) == tokens_of(alone(bb, prompts[i], r))
    assert max(gate.seen_rows) == 2 and max(gate.seen_cells) <= cap
    with pytest.raises(ResourceExhausted, match="--generate-max-cached-tokens 192"):
        engine.submit(req(TEXTS[1], 200), None)
    engine.close()


def test_the_cache_stays_within_its_cap_when_a_long_row_leaves_and_short_ones_join(bb: FrozenBackbone) -> None:
    """A (long text, few tokens) and B (short text, more tokens) run; A leaves; three short rows join B. The slab
    must shrink its positions to fit four rows within the cap instead of keeping A's length for all."""
    cap = 256
    engine = Engine(bb, GenerationSettings(max_seqs=4, max_cached_tokens=cap))
    gate = Gate(engine)
    long_text = " ".join(TEXTS * 3)
    first = [req(long_text, 10), req(TEXTS[0], 40)]
    streams = [engine.submit(r, None) for r in first]
    gate.run(12)
    assert len(engine.running) == 1  # A left after its 10 tokens
    later = [req(TEXTS[i], 30) for i in (2, 4, 5)]
    streams += [engine.submit(r, None) for r in later]
    gate.free()
    for r, out in zip(first + later, [list(x) for x in streams], strict=True):
        assert tokens_of(out) == tokens_of(alone(bb, None, r))
    assert max(gate.seen_rows) == 4 and max(gate.seen_cells) <= cap, gate.seen_cells
    engine.close()


def test_a_cancelled_or_abandoned_row_leaves_at_the_next_step(bb: FrozenBackbone) -> None:
    engine = Engine(bb, GenerationSettings())
    gate = Gate(engine)
    long = engine.submit(req(TEXTS[0], 200, rid="long"), None)
    other = engine.submit(req(TEXTS[1], 40, rid="other"), None)
    gate.run(2)
    assert engine.cancel("long") is True
    gate.run(1)
    assert [r.key for r in engine.running] == ["other"]
    pieces = list(long)
    assert pieces[-1].finish_reason == "cancelled" and pieces[-1].generated_tokens <= 4
    next(other)
    other.close()  # the consumer went without a cancel: its row leaves too
    gate.run(1)
    assert engine.running == [] and engine.stats().cancelled == 2
    assert engine.cancel("late") is False  # a cancel that overtakes its request: it ends at once on arrival
    gate.free()
    assert [p.finish_reason for p in engine.submit(req(TEXTS[2], 10, rid="late"), None)] == ["cancelled"]
    engine.close()


def test_through_a_ray_actor_mixed_requests_equal_each_alone_and_a_cancel_removes_the_row(
        server, tiny_causal_lm: str, prompts: list[RowPrompt | None], bb: FrozenBackbone) -> None:  # type: ignore[no-untyped-def]
    """The served tiny-lm replica (a Ray actor, batching on): concurrent requests through the coordinator's
    pool, each equal to the one-sequence path in this process; closing a stream early removes its row."""
    pool = server.coord.pool
    blobs = [b"" if p is None else encode_prompt(p.tensor, kind=p.kind) if isinstance(p, Row) else encode_prompt(p)
             for p in prompts]
    reqs = [GenerateRequest(sha256_hex(b) if b else "", {sha256_hex(b): b} if b else {}, TEXTS[i], 6 + 4 * i)
            for i, b in enumerate(blobs)]

    async def collect(r: GenerateRequest) -> list[GeneratePiece]:
        return [p async for p in pool.generate("tiny-lm", r)]

    async def run_all() -> list[list[GeneratePiece]]:
        return await asyncio.gather(*[collect(r) for r in reqs])

    got = server.call(run_all())
    for r, p, out in zip(reqs, prompts, got, strict=True):
        assert tokens_of(out) == tokens_of(alone(bb, p, r))
        assert out[-1].finish_reason in ("length", "eos")

    metrics = server.coord.metrics

    def sample(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, {"backbone": "tiny-lm", **labels}) or 0.0

    removed = sample("promptbank_generate_cancels_total", outcome="removed")

    async def abandon() -> int:
        n = 0
        async with contextlib.aclosing(pool.generate("tiny-lm", GenerateRequest("", {}, TEXTS[0], 240))) as it:
            async for _ in it:
                n += 1
                if n == 2:
                    break
        for _ in range(200):  # the cancel's answer is counted when it comes
            if sample("promptbank_generate_cancels_total", outcome="removed") > removed:
                break
            await asyncio.sleep(0.05)
        await pool.generation.poll()
        return n

    assert server.call(abandon()) == 2
    assert sample("promptbank_generate_cancels_total", outcome="removed") == removed + 1
    assert sample("promptbank_generate_running") == 0 and sample("promptbank_generate_rows_cancelled") >= 1
    assert sample("promptbank_generate_time_to_first_token_seconds_count") >= len(reqs) + 1
    assert sample("promptbank_generate_tokens_total") >= sum(o[-1].generated_tokens for o in got)
