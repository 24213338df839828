"""The read path apart from the write path: reads never wait for the writer thread, resolutions are cached
until any coordinator changes the catalog, and a job's training data is read only to train it."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import event

from bank import catalog
from bank.db import make_engine, make_sessionmaker
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.test_server import DATA, input_hp, train


def test_reads_do_not_wait_for_a_busy_writer(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    train(client, "rp-busy")
    busy = asyncio.run_coroutine_threadsafe(server.coord.db.run(lambda s: time.sleep(8)), server.loop)
    try:
        time.sleep(0.2)  # the writer thread is now inside the sleep
        client.classify([("rp-busy", "good great lovely")])
        client.get_prompt("rp-busy")
        client.list_versions("rp-busy")
        client.list_jobs()
        client.get_version("rp-busy@latest")
        assert not busy.done(), "a read waited for the writer"
    finally:
        busy.result(30)


def test_resolutions_are_cached_until_another_coordinator_moves_an_alias(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    v1 = train(client, "rp-alias").result_version
    v2 = train(client, "rp-alias").result_version
    client.set_alias("rp-alias", "prod", 1)
    inference = server.coord.inference
    assert client.classify([("rp-alias@prod", "good")])[0].version == v1
    hits = inference.resolution_hits
    for _ in range(3):
        assert client.classify([("rp-alias@prod", "good")])[0].version == v1
    assert inference.resolution_hits - hits == 3  # nothing changed: resolved from the cache

    engine = make_engine(server.coord.config.db)  # another coordinator's write: only the bank is shared
    try:
        with make_sessionmaker(engine)() as s:
            catalog.set_alias(s, "rp-alias", "prod", 2)
            s.commit()
    finally:
        engine.dispose()
    assert client.classify([("rp-alias@prod", "good")])[0].version == v2  # seen on the very next call


def test_training_data_is_read_only_to_train(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    reads: list[str] = []

    def spy(conn, cursor, statement: str, *args) -> None:  # type: ignore[no-untyped-def]
        if "jobs.examples" in statement:
            reads.append(statement)

    engine = server.coord.db.engine
    event.listen(engine, "before_cursor_execute", spy)
    try:
        job = client.create_train_job("rp-data", "tiny-enc", DATA, hyperparameters=input_hp(
            num_virtual_tokens=2, epochs=3, batch_size=8))
        for _ in client.watch_job(job.name, timeout=300):  # every event, each one a read of the job
            client.get_job(job.name)
            client.list_jobs()
        assert client.get_job(job.name).state == jp.TrainJob.SUCCEEDED
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert len(reads) == 1, reads  # the one dispatch
