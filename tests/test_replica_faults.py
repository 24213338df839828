"""Replicas killed under load (real Ray actors, `ray.kill`): every Classify is answered once, correctly, or
refused UNAVAILABLE; none hangs. A backbone whose replica is out of restarts fails its job with the reason
while the other backbones keep serving."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import psutil
import pytest
import ray
from ray.exceptions import ActorDiedError, RayActorError

from coordinator.config import BackboneSpec, ServerConfig
from coordinator.pool import Replica
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.test_replicas import _add_prompts, _server
from tests.test_server import DATA, input_hp

ROWS = [("route-a", "good great lovely"), ("route-b", "bad awful terrible")] * 4


def pid_of(rep: Replica) -> int:
    """The replica's process id, asked of the actor itself (waits while Ray restarts it)."""
    return ray.get(rep.worker.info(), timeout=60).pid


def restarted(rep: Replica, old_pid: int, timeout: float = 90) -> int:
    """The pid of the replica once Ray has restarted it in a new process; fails if it never leaves `old_pid`
    (a kill that killed nothing). A call sent as the kill lands may still reach the old process, or die with it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = pid_of(rep)
        except RayActorError:  # died under this call, or still restarting
            time.sleep(0.2)
            continue
        if pid != old_pid:
            return pid
        time.sleep(0.2)
    raise AssertionError(f"replica {rep.index} still runs in pid {old_pid} {timeout:g} s after ray.kill")


def test_replicas_killed_under_classify_load_lose_no_request(ray_session: None, tiny_encoder: str,
                                                              tmp_path: Path) -> None:
    live = _server(tiny_encoder, tmp_path)
    _add_prompts(live, ["route-a", "route-b"])
    try:
        with Client(live.address, timeout=60) as c:
            expected = [p.scores for p in c.classify(ROWS)]
        answers: list[object] = []
        stop = threading.Event()

        def load() -> None:
            with Client(live.address, timeout=60) as c:
                while not stop.is_set():
                    try:
                        answers.append([p.scores for p in c.classify(ROWS)])
                    except grpc.RpcError as exc:
                        answers.append(exc)

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        reps = live.coord.pool.get("enc2").replicas
        pids = [pid_of(r) for r in reps]
        assert len(set(pids)) == 2, pids
        time.sleep(1.0)
        for victims in ([0], [1], [0, 1]):  # one, the other, then both at once: calls wait for a restart
            before = [pids[i] for i in victims]
            for i in victims:
                ray.kill(reps[i].handle, no_restart=False)  # Ray restarts it; meanwhile the other takes the rows
            for i in victims:  # each kill killed its replica: it answers again from a new process
                pids[i] = restarted(reps[i], pids[i])
            assert not set(pids[i] for i in victims) & set(before), (before, pids)
            time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a Classify hung after its replica died"
        failed = [a for a in answers if isinstance(a, grpc.RpcError)]
        assert {f.code() for f in failed} <= {grpc.StatusCode.UNAVAILABLE}, [f.details() for f in failed]
        ok = [a for a in answers if not isinstance(a, grpc.RpcError)]
        assert len(ok) >= 20 and len(failed) <= len(answers) // 10, (len(ok), len(failed))
        for a in ok:  # each answer is whole and right: the rows ran exactly once, on a live replica
            assert len(a) == len(ROWS)
            for got, want in zip(a, expected, strict=True):
                assert got == pytest.approx(want, abs=1e-5)
        deadline = time.monotonic() + 60
        while any(r.state != "live" for r in reps) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [r.state for r in reps] == ["live", "live"]
        with Client(live.address, timeout=60) as c:  # and a retry after the storm just works
            for got, want in zip([p.scores for p in c.classify(ROWS)], expected, strict=True):
                assert got == pytest.approx(want, abs=1e-5)
    finally:
        live.stop()


def test_a_replica_out_of_restarts_fails_its_job_and_spares_other_backbones(
        ray_session: None, tiny_encoder: str, tiny_causal_lm: str, tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, db=str(tmp_path / "b.db"), grace_seconds=1.0, worker_cpus=0.25,
                       backbones=(BackboneSpec("enc1", tiny_encoder), BackboneSpec("lm", tiny_causal_lm)))
    live = LiveServer(cfg)
    try:
        with Client(live.address, timeout=60) as c:
            lm = c.create_train_job("talk", "lm", DATA, hyperparameters=input_hp(
                num_virtual_tokens=2, epochs=1, batch_size=8))
            ok = c.create_train_job("enc-ok", "enc1", DATA, hyperparameters=input_hp(
                num_virtual_tokens=2, epochs=1, batch_size=8))
            assert c.wait_job(lm.name, timeout=300).state == jp.TrainJob.SUCCEEDED
            assert c.wait_job(ok.name, timeout=300).state == jp.TrainJob.SUCCEEDED
            said = "".join(c.generate("talk", "hello", max_new_tokens=3))
            hp = input_hp(num_virtual_tokens=2, epochs=1000, max_steps=5000, batch_size=8, patience=10000)
            job = c.create_train_job("doomed", "enc1", DATA, hyperparameters=hp, eval_fraction=0)
            for ev in c.watch_job(job.name, timeout=120):
                if ev.kind == jp.TrainJobEvent.PROGRESS:
                    break
            doomed = live.coord.pool.get("enc1").replicas[0]
            old_pid = pid_of(doomed)
            ray.kill(doomed.handle, no_restart=True)  # never comes back
            done = c.wait_job(job.name, timeout=300)
            assert done.state == jp.TrainJob.FAILED
            assert "replica 0 died and Ray gave up restarting it" in done.error, done.error
            with pytest.raises(ActorDiedError):  # the kill killed it: the actor is gone for good
                pid_of(doomed)
            assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
            with pytest.raises(grpc.RpcError) as err:
                c.classify([("enc-ok", "anything")])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "backbone 'enc1' has no live replica (replica 0 dead): Ray gave up" in (err.value.details() or "")
            with pytest.raises(grpc.RpcError) as err:  # a new job's task cannot be checked: refused, nothing queued
                c.create_train_job("after", "enc1", DATA, hyperparameters=hp)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert all(j.prompt != "prompts/after" for j in c.list_jobs())
            assert "".join(c.generate("talk", "hello", max_new_tokens=3)) == said  # the other backbone serves
    finally:
        live.stop()
