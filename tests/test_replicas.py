"""Real replicas (Ray actors) behind one backbone: routing follows the prompt caches, and a graceful stop
lets in-flight calls finish. The pool's pick rule itself is tested on its own in test_inference.py."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import ray
import torch

from bank import catalog
from bank.codec import encode_prompt
from coordinator.batcher import BatchLimits
from coordinator.config import BackboneSpec, ServerConfig
from coordinator.pool import REPLICA_ENV
from promptbank import Client
from promptbank_domain.task import TaskSpec
from tests.conftest import LiveServer
from tests.processes import free_port


def _server(tiny_encoder: str, path: Path, grace: float = 1.0) -> LiveServer:
    # a quarter CPU per actor: the session's shared server holds most of the test Ray's CPUs
    cfg = ServerConfig(port=0, db=str(path / "b.db"), grace_seconds=grace, worker_cpus=0.25,
                       backbones=(BackboneSpec("enc2", tiny_encoder, replicas=2),))
    return LiveServer(cfg)


def _add_prompts(live: LiveServer, names: list[str]) -> None:
    def q(s):  # type: ignore[no-untyped-def]
        for k, name in enumerate(names):
            catalog.create_prompt(s, name, TaskSpec(labels=("neg", "pos")))
            catalog.add_version(s, name, "enc2", encode_prompt(torch.randn(3, 32, generator=torch.Generator().manual_seed(k))))

    live.coord.db.run_sync(q)


@pytest.fixture(scope="module")
def two_replicas(ray_session: None, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = _server(tiny_encoder, tmp_path_factory.mktemp("two-replicas"))
    _add_prompts(live, ["route-a", "route-b"])
    yield live
    live.stop()


def test_a_prompt_stays_on_the_replica_that_holds_it(two_replicas: LiveServer) -> None:
    replicas = two_replicas.coord.pool.get("enc2").replicas
    assert len(replicas) == 2 and replicas[0].handle is not replicas[1].handle
    with Client(two_replicas.address) as c:
        first = c.classify([("route-a", "hello there")])[0]
        v = c.get_version("route-a")
        def holds(r) -> bool:  # type: ignore[no-untyped-def]  # rows are keyed "sha256:task digest" (row_key)
            return any(k.split(":")[0] == v.sha256 for k in ray.get(r.handle.cached_prompts.remote()))

        holder = next(r for r in replicas if holds(r))
        other = next(r for r in replicas if r is not holder)
        before = holder.batches
        for _ in range(5):  # one at a time: equal load, so the cached copy decides
            assert c.classify([("route-a", "hello there")])[0].scores == pytest.approx(first.scores, abs=1e-6)
        assert holder.batches - before == 5
        assert not holds(other), "the prompt was sent twice"


def test_replicas_run_with_the_replica_environment(two_replicas: LiveServer) -> None:
    """oneDNN's per-shape primitive cache is off in every replica (the soak's memory growth), set by the pool
    through Ray's runtime_env: this process does not carry the variable itself."""
    assert not set(REPLICA_ENV) & set(os.environ)
    replicas = []
    for p in psutil.Process().children(recursive=True):
        try:
            if " ".join(p.cmdline()).startswith("ray::BackboneWorker"):
                replicas.append(p.environ())
        except psutil.Error:
            continue
    assert len(replicas) >= 2, "no replica processes found under this test's Ray"
    for env in replicas:
        assert {k: env.get(k) for k in REPLICA_ENV} == REPLICA_ENV


def test_load_spreads_over_both_replicas(two_replicas: LiveServer) -> None:
    replicas = two_replicas.coord.pool.get("enc2").replicas
    batcher = two_replicas.coord.inference.batcher("enc2")
    batcher.limits, limits = BatchLimits(max_rows=1, max_wait_ms=0), batcher.limits  # one row per batch
    before = [r.batches for r in replicas]

    def call(i: int) -> str:
        with Client(two_replicas.address) as c:
            return c.classify([(("route-a", "route-b")[i % 2], f"text {i}")])[0].label

    try:
        with ThreadPoolExecutor(max_workers=16) as ex:
            labels = list(ex.map(call, range(48)))
    finally:
        batcher.limits = limits
    assert all(label in ("neg", "pos") for label in labels)
    served = [r.batches - b for r, b in zip(replicas, before, strict=True)]
    assert sum(served) == 48 and min(served) > 0, f"one replica took all the load: {served}"


def test_graceful_stop_lets_in_flight_calls_finish(ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    live = _server(tiny_encoder, tmp_path, grace=10.0)
    _add_prompts(live, ["drain"])
    with Client(live.address) as c:
        expected = c.classify([("drain", "stay a while")])[0].scores
    batcher = live.coord.inference.batcher("enc2")
    batcher.limits = BatchLimits(max_rows=64, max_wait_ms=1500)  # hold the calls in the batcher
    results: list[object] = []

    def call() -> None:
        with Client(live.address, timeout=30) as c:
            try:
                results.append(c.classify([("drain", "stay a while")])[0].scores)
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while sum(len(p.rows) for p in batcher._queue) < 8 and time.monotonic() < deadline:  # all 8 in flight
        time.sleep(0.02)
    assert sum(len(p.rows) for p in batcher._queue) == 8, "the calls never reached the batcher"
    live.stop()  # graceful: NOT_SERVING, then up to grace_seconds for in-flight calls
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8
    bad = [r for r in results if not isinstance(r, dict)]
    assert not bad, f"in-flight calls failed during a graceful stop: {bad}"
    assert all(r == pytest.approx(expected, abs=1e-6) for r in results)


def test_a_start_that_fails_releases_what_it_took(ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    """A coordinator whose health port is taken fails after its replicas, its main port and its scheduler
    started: it must release them all, or the process that goes on (a supervisor retrying, this test session)
    keeps a port that answers for a coordinator that never served, and Ray CPUs."""
    cpus = ray.available_resources().get("CPU", 0.0)
    main = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = ServerConfig(port=main, health_port=taken.getsockname()[1], db=str(tmp_path / "b.db"), worker_cpus=0.5,
                           backbones=(BackboneSpec("taken", tiny_encoder),))
        with pytest.raises(OSError, match="--health-port"):
            LiveServer(cfg)
    with socket.socket() as probe:  # nothing listens on the main port any more
        assert probe.connect_ex(("127.0.0.1", main)) != 0
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0.0) < cpus and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0.0) == pytest.approx(cpus)
