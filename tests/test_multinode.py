"""A real two-node Ray cluster on this machine (`ray start --head` and `ray start --address`, each node with a
resource of its own, Ray's token auth on as on KubeRay), a coordinator process joining it with --ray-address
and a PostgreSQL bank: replicas spread over both nodes, training and mixed-task Classify served across both,
then the second node's raylet and workers SIGKILLed under load; calls and jobs carry on on the first node."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.load import ClassifyLoad, same_scores
from tests.pg_fixtures import fresh_db_url
from tests.processes import Coordinator, RayHead, RayWorkerNode
from tests.test_crash import versions
from tests.test_server import DATA, input_hp

SHORT = input_hp(num_virtual_tokens=2, epochs=3, batch_size=8, learning_rate=0.05)
# 3,000 steps: still training when node b dies 3 s after both started, on CPUs that step the tiny model in 7 ms
LONG = input_hp(num_virtual_tokens=2, epochs=1000, max_steps=3000, batch_size=8, checkpoint_every=25,
                          patience=10000, learning_rate=0.05)
ROWS = [("mn-a", "a lovely happy day"), ("mn-b", "awful, just awful"), ("mn-a", "so bad"), ("mn-b", "great fun")]


@pytest.fixture()
def cluster() -> Iterator[tuple[RayHead, RayWorkerNode]]:
    token = secrets.token_hex(32)
    head = RayHead(cpus=1, resources={"node_a": 1}, token=token)
    try:
        node = RayWorkerNode(head, cpus=1, resources={"node_b": 1})
    except BaseException:
        head.stop()
        raise
    yield head, node
    node.stop()
    head.stop()


def test_replicas_on_two_nodes_serve_and_survive_losing_one(
        cluster: tuple[RayHead, RayWorkerNode], tiny_encoder: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    head, node_b = cluster
    db = fresh_db_url(request, "postgresql", tmp_path)
    coord = Coordinator(db, {"tiny": tiny_encoder}, tmp_path, ray_address=head.address,
                        env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head.env["RAY_AUTH_TOKEN"]},
                        extra=("--replicas", "2", "--worker-cpus", "1", "--placement", "spread"))
    try:
        coord.wait_ready()
        nodes = {n["NodeID"]: n["Resources"] for n in head.nodes() if n["Alive"]}
        b_id = next(i for i, r in nodes.items() if "node_b" in r)
        with Client(coord.address, timeout=60) as c:
            serving = c.get_backbone("tiny").serving
            assert sorted(r.node_id for r in serving) == sorted(nodes), "one replica on each node"
            for name in ("mn-a", "mn-b"):
                assert c.wait_job(c.create_train_job(name, "tiny", DATA, hyperparameters=SHORT).name,
                                  timeout=300).state == jp.TrainJob.SUCCEEDED
            expected = [p.scores for p in c.classify(ROWS)]
            first = c.create_train_job("mn-long-1", "tiny", DATA, hyperparameters=LONG, eval_fraction=0)
            _until_running(c, first.name)
            second = c.create_train_job("mn-long-2", "tiny", DATA, hyperparameters=LONG, eval_fraction=0)
            _until_running(c, second.name)  # one job per replica: each node trains one

        load = ClassifyLoad(coord.address, ROWS, threads=3)
        time.sleep(3)
        before = len(load.answers)
        node_b.kill()  # the raylet and every worker process of node b, at once
        time.sleep(8)
        load.stop()
        assert not load.failures, load.failures[:3]
        assert len(load.answers) > before, "calls went on after the node died"
        assert all(same_scores(a, expected) for a in load.answers), "every answer is the one both nodes gave before"

        with Client(coord.address, timeout=60) as c:
            jobs = [c.wait_job(j.name, timeout=600) for j in (first, second)]
            assert all(j.state == jp.TrainJob.SUCCEEDED for j in jobs), [j.error for j in jobs]
            assert sorted(j.attempts for j in jobs) == [1, 2], "the job on node b resumed once on node a"
            assert versions(db, "mn-long-1") == [1] and versions(db, "mn-long-2") == [1]
            states = {r.node_id: r.state for r in c.get_backbone("tiny").serving}
            assert states[b_id] in ("restarting", "dead") and set(states.values()) - {states[b_id]} == {"live"}
            assert same_scores([p.scores for p in c.classify(ROWS)], expected)
    except BaseException:
        print(coord.tail(80))
        raise
    finally:
        coord.close()


def _until_running(c: Client, job: str) -> None:
    for ev in c.watch_job(job, timeout=300):
        if ev.kind == jp.TrainJobEvent.PROGRESS:
            return
    raise AssertionError(f"job {job} ended before it trained")
