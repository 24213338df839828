"""A client that gives up: a cancelled Classify is dropped from its batch before the forward (seen in the
batcher's counters), and a cancelled Watch leaves its job running."""

from __future__ import annotations

import time

import grpc

from coordinator.batcher import BatchLimits, MicroBatcher
from promptbank import Client
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import jobs_pb2 as jp
from tests.test_server import DATA, input_hp, train


def test_a_cancelled_classify_never_reaches_a_replica(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    train(client, "gu-cancel")

    async def on_loop() -> MicroBatcher:  # the batcher lives on the server's event loop
        return server.coord.inference.batcher("tiny-enc")

    batcher = server.call(on_loop())
    batcher.limits, limits = BatchLimits(max_rows=64, max_wait_ms=1500), batcher.limits  # hold the batch open
    dropped, rows = batcher.dropped_rows, batcher.rows
    try:
        req = inf.ClassifyRequest(rows=[inf.ClassifyRow(prompt="gu-cancel", text="fine words")] * 3)
        gone = client.inference.Classify.future(req, timeout=30)
        kept = client.inference.Classify.future(inf.ClassifyRequest(rows=req.rows[:1]), timeout=30)
        time.sleep(0.3)  # both are queued in the batcher, waiting for company
        assert gone.cancel()
        assert len(kept.result().results) == 1
    finally:
        batcher.limits = limits
    assert gone.cancelled() and gone.code() == grpc.StatusCode.CANCELLED
    assert batcher.dropped_rows - dropped == 3, "the cancelled caller's rows were still run"
    assert batcher.rows - rows == 1


def test_cancelling_a_watch_does_not_cancel_the_job(client: Client) -> None:
    hp = input_hp(num_virtual_tokens=2, epochs=30, batch_size=8, patience=10000)
    job = client.create_train_job("gu-watch", "tiny-enc", DATA, hyperparameters=hp)
    stream = client.jobs.WatchTrainJob(jp.WatchTrainJobRequest(name=job.name), timeout=120)
    for ev in stream:
        if ev.kind == jp.TrainJobEvent.PROGRESS:
            break
    stream.cancel()
    done = client.wait_job(job.name, timeout=300)
    assert done.state == jp.TrainJob.SUCCEEDED and done.result_version == "prompts/gu-watch/versions/1"
