"""Cluster-wide inference: micro-batching across concurrent requests, isolation, caches, ensembles, generation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import torch

from bank import catalog
from bank.codec import encode_prompt, sha256_hex
from coordinator.batcher import BatchLimits
from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from tests.test_server import TOPIC, code_of, train
from tests.workers_util import classify
from workers.actor import BackboneWorker
from workers.cache import LRU, tensor_bytes
from workers.protocol import GenerateRequest, MissingPrompts


def test_concurrent_clients_get_their_own_results_and_share_batches(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    train(client, "conc-a")
    train(client, "conc-b", data=TOPIC)
    texts = [f"text number {i} about {'football' if i % 2 else 'taxes'} and {'joy' if i % 3 else 'grief'}" for i in range(24)]
    requests = [[("conc-a" if (i + j) % 2 else "conc-b", texts[(i * 5 + j) % 24]) for j in range(1 + i % 4)]
                for i in range(24)]
    expected = [[client.classify([row])[0] for row in req] for req in requests]  # each row alone
    batcher = server.coord.inference.batchers["tiny-enc"]
    before = batcher.batches

    def call(req):  # type: ignore[no-untyped-def]
        with Client(server.address) as c:
            return c.classify(req)

    with ThreadPoolExecutor(max_workers=24) as ex:
        got = list(ex.map(call, requests))
    for req, exp, out in zip(requests, expected, got, strict=True):
        assert [(p.prompt, p.text) for p in out] == req
        for e, o in zip(exp, out, strict=True):
            assert o.label == e.label and o.scores == pytest.approx(e.scores, abs=1e-5)
    assert batcher.batches - before < len(requests), "concurrent requests were not batched together"


def test_a_failing_request_does_not_fail_its_batch_mates(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    train(client, "iso-good", backbone="tiny-lm", labels=["negative", "positive"], label_words=["bad", "good"])
    # A prompt whose label words collide: it can only fail on the worker, inside a shared batch.
    client.catalog.CreatePrompt(cat.CreatePromptRequest(prompt_id="iso-bad", prompt=cat.Prompt(
        task=cat.TaskSpec(labels=["a", "b"], label_words=["running", "running"]))), timeout=10)

    def add_version(s):  # type: ignore[no-untyped-def]
        catalog.add_version(s, "iso-bad", "tiny-lm",
                          encode_prompt(torch.randn(3, 32)))

    server.coord.db.run_sync(add_version)
    good_alone = client.classify([("iso-good", "lovely day")])[0]
    batcher = server.coord.inference.batcher("tiny-lm")
    batcher.limits, limits = BatchLimits(max_rows=64, max_wait_ms=500), batcher.limits  # make them share a batch
    retries = batcher.split_retries

    def call(ref: str):  # type: ignore[no-untyped-def]
        with Client(server.address) as c:
            try:
                return c.classify([(ref, "lovely day")])[0]
            except grpc.RpcError as err:
                return err

    try:
        with ThreadPoolExecutor(max_workers=9) as ex:
            out = list(ex.map(call, ["iso-good"] * 4 + ["iso-bad"] + ["iso-good"] * 4))
    finally:
        batcher.limits = limits
    assert batcher.split_retries > retries, "the bad request never shared a batch"
    bad = out.pop(4)
    assert isinstance(bad, grpc.RpcError) and bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "distinct" in bad.details()
    assert all(not isinstance(o, grpc.RpcError) and o.scores == pytest.approx(good_alone.scores, abs=1e-5) for o in out)


def test_prompt_ensemble_averages_member_scores(client: Client) -> None:
    train(client, "ens")
    train(client, "ens")
    train(client, "ens-other", data=TOPIC)  # another task: not an ensemble member of "ens"
    text = "really good stuff"
    v1 = client.classify([("ens/versions/1", text)])[0].scores
    v2 = client.classify([("ens/versions/2", text)])[0].scores
    both = client.classify_ensemble([(["ens/versions/1", "ens/versions/2"], text)])[0]
    for label in v1:
        assert both.scores[label] == pytest.approx((v1[label] + v2[label]) / 2, abs=1e-6)
    code, msg = code_of(lambda: client.classify_ensemble([(["ens", "ens-other"], text)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ensemble" in msg


def test_generate_streams_tokens_with_a_soft_prompt(client: Client, tiny_causal_lm: str) -> None:
    train(client, "gen-lm", backbone="tiny-lm", labels=["negative", "positive"], label_words=["bad", "good"])
    pieces = list(client.generate("gen-lm", "the weather today", max_new_tokens=6))
    assert 1 <= len(pieces) <= 6 and "".join(pieces).strip()
    assert pieces == list(client.generate("gen-lm", "the weather today", max_new_tokens=6))  # greedy is deterministic
    # the service streams exactly the worker's greedy decoding under the stored prompt
    v = client.get_version("gen-lm", include_tensor=True)
    local = BackboneWorker(tiny_causal_lm, num_threads=1)
    expected = [p.text for p in local.generate(GenerateRequest(v.sha256, {v.sha256: v.tensor}, "the weather today",
                                                               max_new_tokens=6)) if p.text]
    assert pieces == expected
    train(client, "gen-enc")
    code, msg = code_of(lambda: list(client.generate("gen-enc", "hello")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "cannot generate" in msg
    code, msg = code_of(lambda: list(client.generate("gen-lm", "hello", max_new_tokens=100000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "max_new_tokens" in msg


def test_prompt_cache_stays_within_its_byte_bound() -> None:
    cache: LRU[torch.Tensor] = LRU(10 * 4 * 8, tensor_bytes)  # ten rows of 8 float32
    for i in range(20):
        cache.put(f"k{i}", torch.zeros(3, 8))
        assert cache.size <= cache.max_size
    assert cache.keys() == ["k17", "k18", "k19"]
    cache.get("k17")
    cache.put("k20", torch.zeros(3, 8))
    assert cache.keys() == ["k19", "k17", "k20"]  # k17 was used, so k18 went
    cache.put("huge", torch.zeros(100, 8))
    assert "huge" not in cache.keys()


def test_worker_cache_evicts_and_asks_for_missing_prompts(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1, cache_bytes=2 * 4 * 32 * 4)  # room for two (4, 32) prompts
    blobs = {sha256_hex(b): b for b in (encode_prompt(torch.randn(4, 32)) for _ in range(5))}
    task = {"labels": ["x", "y"]}
    rows = [(k, "some text") for k in blobs]
    full = classify(w, rows, blobs, dict.fromkeys(blobs, task))
    assert w.cache.size <= w.cache.max_size and len(w.cached_prompts()) == 2
    again = classify(w, rows, blobs, dict.fromkeys(blobs, task))
    assert again == full
    evicted = next(k for k in blobs if k not in w.cached_prompts())
    with pytest.raises(MissingPrompts) as err:
        classify(w, [(evicted, "x")], {}, {evicted: task})
    assert err.value.keys == [evicted]
    kept = w.cached_prompts()[0]
    assert classify(w, [(kept, "some text")], {}, {kept: task}) == [full[list(blobs).index(kept)]]


def test_routing_prefers_the_replica_holding_the_prompts(server) -> None:  # type: ignore[no-untyped-def]
    from coordinator.pool import Replica

    pool = server.coord.pool
    bb = pool.get("tiny-enc")
    original = bb.replicas
    a, b = Replica(worker=None, index=0), Replica(worker=None, index=1)  # type: ignore[arg-type]  # never called
    b.sent = {"p1", "p2"}
    bb.replicas = [a, b]
    try:
        assert pool.pick("tiny-enc", {"p1"}) is b  # equal load: the one with the prompt
        b.outstanding = 1
        assert pool.pick("tiny-enc", {"p1"}) is b  # one call busier is still worth the cache
        b.outstanding = 3
        assert pool.pick("tiny-enc", {"p1"}) is a  # far busier: least-loaded wins
    finally:
        bb.replicas = original




def test_a_cancelled_request_leaves_its_batch_mates_alone(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    train(client, "cxl")
    expected = client.classify([("cxl", "fine words")])[0]
    batcher = server.coord.inference.batcher("tiny-enc")
    batcher.limits, limits = BatchLimits(max_rows=64, max_wait_ms=400), batcher.limits  # hold the batch open

    def call(timeout: float):  # type: ignore[no-untyped-def]
        with Client(server.address) as c:
            try:
                return c.classify([("cxl", "fine words")], timeout=timeout)[0]
            except grpc.RpcError as err:
                return err

    dropped, rows = batcher.dropped_rows, batcher.rows
    try:
        with ThreadPoolExecutor(max_workers=6) as ex:
            out = list(ex.map(call, [30, 30, 0.05, 30, 30, 30]))
    finally:
        batcher.limits = limits
    assert batcher.dropped_rows - dropped == 1, "the caller that gave up still had its row run"
    assert batcher.rows - rows == 5  # only the five live callers' rows were forwarded
    gone = out.pop(2)
    assert isinstance(gone, grpc.RpcError) and gone.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert all(not isinstance(o, grpc.RpcError) and o.scores == pytest.approx(expected.scores, abs=1e-6) for o in out)
