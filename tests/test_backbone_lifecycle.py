"""DeregisterBackbone on the shared live server: its replicas stop and their Ray resources return, jobs on it refuse
it unless forced (then they end FAILED, naming the deregistration), a backbone that versions pin keeps its catalog
entry while inference on it is FAILED_PRECONDITION, and registering it again serves it again.

The backbones registered here are named after `tiny-*`, so the shared server's first backbone stays `tiny-enc`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import ray
from ray.actor import ActorHandle

from coordinator.api import API
from coordinator.rest.routes import Router, routes_of
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.test_server import DATA, code_of, input_hp, train

ROOT = Path(__file__).resolve().parents[1]
WORKER_CPUS = 0.25  # the shared server's --worker-cpus: what each replica holds of Ray's CPUs
SLOW = input_hp(num_virtual_tokens=2, epochs=1000, batch_size=4, patience=10_000, max_steps=100_000)


def handles(server: LiveServer, name: str) -> list[ActorHandle]:  # type: ignore[type-arg]
    return [r.handle for r in server.coord.pool.get(name).replicas]


def free_cpus() -> float:
    return float(ray.available_resources().get("CPU", 0.0))


def settled_free_cpus() -> float:
    """Ray's free CPUs once the view stops changing (it follows the raylets' reports, a moment late)."""
    last = free_cpus()
    for _ in range(40):
        time.sleep(0.5)
        now = free_cpus()
        if now == last:
            break
        last = now
    return last


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def assert_stopped(actors: list[ActorHandle], cpus_before: float) -> None:  # type: ignore[type-arg]
    """Each actor is gone, and Ray has their CPUs back."""
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.info.remote(), timeout=60)
    eventually(lambda: free_cpus() >= cpus_before + len(actors) * WORKER_CPUS - 1e-6)


def cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "promptbank.cli", "--server", server.address, *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_the_rest_route_is_a_custom_method_on_the_backbone() -> None:
    route, values = Router(routes_of(API)).find("POST", "/v1/backbones/minilm:deregister")
    assert route.rpc == "/promptbank.v1.PromptCatalog/DeregisterBackbone" and values == {"name": "backbones/minilm"}


def test_a_backbone_without_versions_is_removed_and_can_come_back(server: LiveServer, client: Client,
                                                                  tiny_encoder: str) -> None:
    registered = client.register_backbone("unreg-bare", tiny_encoder, replicas=2)
    assert registered.replicas == 2
    actors, cpus = handles(server, "unreg-bare"), settled_free_cpus()
    out = cli(server, "backbones", "deregister", "unreg-bare")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "deregistered backbones/unreg-bare: stopped 2 replicas; removed from the catalog"
    assert_stopped(actors, cpus)
    assert "unreg-bare" not in server.coord.pool.backbones
    code, msg = code_of(lambda: client.get_backbone("unreg-bare"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "backbones/unreg-bare" not in [b.name for b in client.list_backbones()]
    again = cli(server, "backbones", "deregister", "unreg-bare")  # nothing left to deregister
    assert again.returncode == 1 and "NOT_FOUND" in again.stderr and "unreg-bare" in again.stderr
    back = client.register_backbone("unreg-bare", tiny_encoder)
    assert back.replicas == 1 and client.get_backbone("unreg-bare").serving[0].state == "live"
    assert client.deregister_backbone("unreg-bare").removed


def test_a_pinned_backbone_stays_listed_but_is_not_served_until_registered_again(
        server: LiveServer, client: Client, tiny_causal_lm: str) -> None:
    client.register_backbone("unreg-lm", tiny_causal_lm)
    train(client, "unreg-story", backbone="unreg-lm", labels=["negative", "positive"],
          label_words=["bad", "good"], hyperparameters=input_hp(num_virtual_tokens=2, max_steps=4, batch_size=8))
    before = client.classify([("unreg-story", "so good")])[0]
    actors, cpus = handles(server, "unreg-lm"), settled_free_cpus()

    gone = client.deregister_backbone("backbones/unreg-lm")
    assert (gone.removed, gone.stopped_replicas, list(gone.failed_jobs)) == (False, 1, [])
    assert_stopped(actors, cpus)
    kept = client.get_backbone("unreg-lm")
    assert kept.fingerprint == gone.backbone.fingerprint and kept.replicas == 0 and not kept.serving
    assert "backbones/unreg-lm" in [b.name for b in client.list_backbones()]
    assert client.get_version("unreg-story").backbone == "backbones/unreg-lm"  # the version still pins it
    for call in (lambda: client.classify([("unreg-story", "so good")]),
                 lambda: client.generate_full("unreg-story", "once", max_new_tokens=2),
                 lambda: client.generate_full(None, "once", max_new_tokens=2, backbone="unreg-lm")):
        code, msg = code_of(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "'unreg-lm' is not served" in msg, msg
    code, msg = code_of(lambda: client.create_train_job("unreg-more", "unreg-lm", DATA))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not served" in msg

    client.register_backbone("unreg-lm", tiny_causal_lm)
    again = client.classify([("unreg-story", "so good")])[0]
    assert again.version == before.version and again.scores == pytest.approx(before.scores, abs=1e-6)
    assert client.generate_full("unreg-story", "once", max_new_tokens=2).finish_reason in ("length", "eos")
    assert not client.deregister_backbone("unreg-lm").removed  # leave no replica behind for the other tests


def test_jobs_on_a_backbone_refuse_it_unless_forced(server: LiveServer, client: Client, tiny_encoder: str) -> None:
    client.register_backbone("unreg-busy", tiny_encoder)
    running = client.create_train_job("unreg-run", "unreg-busy", DATA, hyperparameters=SLOW)
    eventually(lambda: client.get_job(running.name).state == jp.TrainJob.RUNNING, timeout=120)
    queued = client.create_train_job("unreg-wait", "unreg-busy", DATA, hyperparameters=SLOW)  # its replica is busy

    code, msg = code_of(lambda: client.deregister_backbone("unreg-busy"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{running.name} (RUNNING)" in msg and f"{queued.name} (QUEUED)" in msg and "force" in msg
    assert client.get_backbone("unreg-busy").replicas == 1  # a refusal changes nothing
    assert client.get_job(running.name).state == jp.TrainJob.RUNNING
    assert client.get_job(queued.name).state == jp.TrainJob.QUEUED

    actors, cpus = handles(server, "unreg-busy"), settled_free_cpus()
    gone = client.deregister_backbone("unreg-busy", force=True)
    assert list(gone.failed_jobs) == [running.name, queued.name] and gone.removed
    assert_stopped(actors, cpus)
    for job, was in ((running, "RUNNING"), (queued, "QUEUED")):
        ended = client.get_job(job.name)
        assert ended.state == jp.TrainJob.FAILED
        assert "backbone 'unreg-busy' was deregistered by 'local' with force" in ended.error
        assert f"the job was {was}" in ended.error
    assert not {running.name, queued.name} & {f"jobs/{j}" for j in server.coord.scheduler._tasks}  # let go of
    last = list(client.watch_job(running.name, timeout=30))[-1]
    assert last.state == jp.TrainJob.FAILED and "deregistered" in last.message
