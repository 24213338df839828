"""Coordinators as real processes, killed for real: SIGKILL mid-training and mid-publish, two coordinators on
one PostgreSQL bank and one Ray cluster. Each case proves what the user sees, that nothing was lost and that
nothing happened twice (versions and attempts counted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from bank import catalog
from bank.db import make_engine, make_sessionmaker
from bank.models import Job, PromptVersion
from promptbank import Client
from promptbank.client import RpcError
from promptbank_api.v1 import jobs_pb2 as jp
from tests.load import same_scores
from tests.pg_fixtures import fresh_db_url
from tests.processes import Coordinator, RayHead, owner_pid
from tests.test_server import DATA, input_hp

# long enough to be killed mid-way (a progress event every 5 steps, a checkpoint every 25), short enough to resume
# 1,000 steps: long enough that a job is still training when the tests stop its coordinator, on CPUs that
# step the tiny model in 7 ms as well as in 25 ms
LONG = input_hp(num_virtual_tokens=2, epochs=1000, max_steps=1000, batch_size=8, checkpoint_every=25,
                          patience=10000, learning_rate=0.05)
SHORT = input_hp(num_virtual_tokens=2, epochs=3, batch_size=8, learning_rate=0.05)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    head = RayHead()
    yield head
    head.stop()


@pytest.fixture()
def procs(tmp_path: Path) -> Iterator[list[Coordinator]]:
    """Every coordinator a test starts; all are killed at the end, and their logs shown if the test failed."""
    started: list[Coordinator] = []
    yield started
    for c in started:
        c.close()


def start(procs: list[Coordinator], db: str, tiny_encoder: str, tmp_path: Path, ray: RayHead, **kw) -> Coordinator:  # type: ignore[no-untyped-def]
    c = Coordinator(db, {"tiny": tiny_encoder}, tmp_path, ray_address=ray.address, **kw)
    procs.append(c)
    try:
        return c.wait_ready()
    except RuntimeError:
        c.close()
        raise


def until_step(client: Client, job: str, step: int) -> None:
    for ev in client.watch_job(job, timeout=240):
        assert ev.state != jp.TrainJob.FAILED, ev.message
        if ev.kind == jp.TrainJobEvent.PROGRESS and ev.step >= step:
            return
    raise AssertionError(f"{job} ended before step {step}")


class Watcher(threading.Thread):
    """A client's `jobs watch` that runs across the kill: the SDK reconnects after the last event it saw."""

    def __init__(self, address: str, job: str):
        super().__init__(daemon=True)
        self.address, self.job = address, job
        self.events: list[jp.TrainJobEvent] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with Client(self.address, timeout=30) as c:
                self.events.extend(c.watch_job(self.job, timeout=400))
        except BaseException as exc:  # noqa: BLE001 - asserted by the test
            self.error = exc


def versions(db: str, prompt: str) -> list[int]:
    engine = make_engine(db)
    try:
        with make_sessionmaker(engine)() as s:
            return sorted(s.scalars(select(PromptVersion.version).join(PromptVersion.prompt)
                                    .where(PromptVersion.prompt.has(name=prompt))))
    finally:
        engine.dispose()


def messages(client: Client, job: str) -> list[str]:
    return [e.message for e in client.watch_job(job, timeout=30)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_training_resumes_from_checkpoint_and_publishes_once(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path, tiny_encoder: str, ray_head: RayHead,
        procs: list[Coordinator]) -> None:
    db = fresh_db_url(request, backend, tmp_path)
    first = start(procs, db, tiny_encoder, tmp_path, ray_head)
    with Client(first.address, timeout=30) as c:
        job = c.create_train_job("crash", "tiny", DATA, hyperparameters=LONG, eval_fraction=0)
        until_step(c, job.name, 60)  # two checkpoints (25, 50) are committed
        watcher = Watcher(first.address, job.name)
        deadline = time.monotonic() + 30
        while not watcher.events and time.monotonic() < deadline:  # killed mid-stream, not before it opened
            time.sleep(0.05)
        first.kill()
        seen = list(watcher.events)  # what the watch had before the SIGKILL
    assert first.proc.returncode == -9
    # the kill landed mid-training: the watch had events, the job still RUNNING, its progress short of the end
    assert seen, "the watcher saw no event before the SIGKILL: the kill did not land mid-stream"
    progress = [e.step for e in seen if e.kind == jp.TrainJobEvent.PROGRESS]
    assert seen[-1].state == jp.TrainJob.RUNNING and progress and 60 <= progress[-1] < LONG.max_steps, seen[-1]

    second = start(procs, db, tiny_encoder, tmp_path, ray_head, port=first.port)  # same address: clients reconnect
    watcher.join(400)
    assert not watcher.is_alive() and watcher.error is None, watcher.error
    seqs = [e.sequence for e in watcher.events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the watch skipped or repeated events"
    assert len(watcher.events) > len(seen), "the watch saw nothing after the restart"
    assert watcher.events[-1].state == jp.TrainJob.SUCCEEDED
    with Client(second.address, timeout=30) as c:
        done = c.get_job(job.name)
        assert done.state == jp.TrainJob.SUCCEEDED, done.error
        assert done.attempts == 2 and done.step == LONG.max_steps
        assert done.result_version == "prompts/crash/versions/1"
        said = messages(c, job.name)
        assert any(m.startswith("the lease of ") and "expired; will resume from checkpoint at step" in m
                   for m in said), said
        resumed = [m for m in said if m.startswith("resuming from step")]
        assert len(resumed) == 1 and int(resumed[0].split()[3]) >= 50, said
        assert c.classify([("crash", "good great lovely")])[0].version == done.result_version
    assert versions(db, "crash") == [1]


def test_sigkill_mid_publish_leaves_no_half_version(tmp_path: Path, tiny_encoder: str, ray_head: RayHead,
                                                   procs: list[Coordinator]) -> None:
    db = str(tmp_path / "bank.db")
    # publishes version 1, then dies the second time it reaches the failpoint
    doomed = start(procs, db, tiny_encoder, tmp_path, ray_head, env={"PROMPTBANK_FAILPOINT": "publish.before_commit@2"})
    with Client(doomed.address, timeout=30) as c:
        c.wait_job(c.create_train_job("fp", "tiny", DATA, hyperparameters=SHORT).name, timeout=240)
        assert versions(db, "fp") == [1]
        job = c.create_train_job("fp", "tiny", DATA, hyperparameters=SHORT, aliases=["prod"])
    assert doomed.wait_exit(240) == -9, doomed.tail()  # killed between writing version 2 and committing
    assert versions(db, "fp") == [1]
    engine = make_engine(db)  # what any coordinator would serve now: the previous latest
    with make_sessionmaker(engine)() as s:
        assert catalog.resolve(s, "fp").version == 1 and catalog.resolve(s, "fp@latest").version == 1
    engine.dispose()

    again = start(procs, db, tiny_encoder, tmp_path, ray_head, port=doomed.port)
    with Client(again.address, timeout=30) as c:
        done = c.wait_job(job.name, timeout=240)  # its lease lapses, it runs again and publishes once
        assert done.state == jp.TrainJob.SUCCEEDED and done.result_version == "prompts/fp/versions/2"
        assert done.attempts == 2
        assert c.get_version("fp@prod").name == "prompts/fp/versions/2"
    assert versions(db, "fp") == [1, 2]


def test_two_coordinators_share_one_bank_and_never_run_a_job_twice(
        request: pytest.FixtureRequest, tmp_path: Path, tiny_encoder: str, ray_head: RayHead,
        procs: list[Coordinator]) -> None:
    db = fresh_db_url(request, "postgresql", tmp_path)
    a = start(procs, db, tiny_encoder, tmp_path, ray_head)
    b = start(procs, db, tiny_encoder, tmp_path, ray_head)
    by_pid = {a.pid: a, b.pid: b}
    with Client(a.address, timeout=30) as ca, Client(b.address, timeout=30) as cb:
        # six jobs through both doors: both schedulers race for every one of them
        names = [(ca if i % 2 else cb).create_train_job(f"p{i}", "tiny", DATA, hyperparameters=SHORT).name
                 for i in range(6)]
        done = [ca.wait_job(n, timeout=300) for n in names]
        assert [d.state for d in done] == [jp.TrainJob.SUCCEEDED] * 6, [d.error for d in done]
        assert [d.attempts for d in done] == [1] * 6
        for i in range(6):
            assert versions(db, f"p{i}") == [1]
        rows = [("p0", "good great lovely"), ("p1", "bad awful terrible")]
        assert [p.label for p in ca.classify(rows)] == [p.label for p in cb.classify(rows)]

        long = cb.create_train_job("long", "tiny", DATA, hyperparameters=LONG, eval_fraction=0)
        until_step(cb, long.name, 60)
        running = cb.get_job(long.name)
        owner = by_pid[owner_pid(running)]
        survivor = b if owner is a else a
    owner.kill()
    with Client(survivor.address, timeout=30) as c:
        finished = c.wait_job(long.name, timeout=300)
        assert finished.state == jp.TrainJob.SUCCEEDED, finished.error
        assert finished.attempts == 2 and finished.lease_owner == ""
        said = messages(c, long.name)
        assert any(f":{owner.pid}:" in m and "expired" in m for m in said), said
        assert any(f":{survivor.pid}:" in m and m.startswith("resuming from step") for m in said), said
        assert c.classify([("long", "good great lovely")])[0].version == "prompts/long/versions/1"
    assert versions(db, "long") == [1]
    engine = make_engine(db)
    with make_sessionmaker(engine)() as s:  # every job ran to one end, none is left leased
        assert all(j.state == "SUCCEEDED" and not j.lease_owner for j in s.scalars(select(Job)))
    engine.dispose()


def test_sigterm_drains_calls_checkpoints_jobs_and_hands_them_back(tmp_path: Path, tiny_encoder: str,
                                                                  ray_head: RayHead, procs: list[Coordinator]) -> None:
    db = str(tmp_path / "bank.db")
    first = start(procs, db, tiny_encoder, tmp_path, ray_head, lease_s=60.0)  # a restart must not wait for it
    with Client(first.address, timeout=30) as c:
        c.wait_job(c.create_train_job("calls", "tiny", DATA, hyperparameters=SHORT).name, timeout=240)
        job = c.create_train_job("drained", "tiny", DATA, hyperparameters=LONG, eval_fraction=0)
        until_step(c, job.name, 40)

    calls: list[tuple[float, bool, str]] = []  # (start, ok, error) of every Classify under load
    health: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with Client(first.address, timeout=30) as c:
            while not stop.is_set():
                t = time.monotonic()
                try:
                    c.classify([("calls", "good great lovely")] * 8)
                    calls.append((t, True, ""))
                except RpcError as exc:
                    calls.append((t, False, exc.code().name))

    def probe() -> None:
        with grpc.insecure_channel(first.address) as ch:
            check = health_pb2_grpc.HealthStub(ch).Check
            while not stop.is_set():
                try:
                    health.append(check(health_pb2.HealthCheckRequest(), timeout=2).status)
                except grpc.RpcError:
                    health.append(-1)
                time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(4)] + [threading.Thread(target=probe)]
    for t in threads:
        t.start()
    time.sleep(2)
    sent = time.monotonic()
    assert first.terminate(timeout=60) == 0, first.tail()
    stop.set()
    for t in threads:
        t.join(60)
    before = [(ok, err) for t, ok, err in calls if t < sent]
    assert before and all(ok for ok, _ in before), [err for ok, err in before if not ok]
    after = {err for t, ok, err in calls if t > sent + 0.5 and not ok}
    assert after <= {"UNAVAILABLE"}, after  # refused cleanly once it stopped listening, never hung
    serving, not_serving = 1, 2
    assert serving in health and not_serving in health
    assert health.index(not_serving) > health.index(serving)
    assert -1 not in health[: health.index(not_serving)], "the port closed before health said NOT_SERVING"

    second = start(procs, db, tiny_encoder, tmp_path, ray_head, port=first.port, lease_s=60.0)
    with Client(second.address, timeout=30) as c:
        done = c.wait_job(job.name, timeout=300)  # resumed at once: a handed-back job holds no lease to wait out
        assert done.state == jp.TrainJob.SUCCEEDED and done.attempts == 1, done.error
        said = messages(c, job.name)
        handed = [m for m in said if m.startswith("requeued at coordinator shutdown; will resume from step")]
        assert len(handed) == 1, said
        step = int(handed[0].rsplit(" ", 1)[1])
        resumed = [m for m in messages(c, job.name) if m.startswith("resuming from step")]
        assert resumed == [m for m in resumed if m.startswith(f"resuming from step {step} ")] and resumed, said
    assert versions(db, "drained") == [1]


def test_the_sdk_rides_out_a_coordinator_restart(tmp_path: Path, tiny_encoder: str, ray_head: RayHead,
                                                 procs: list[Coordinator]) -> None:
    db = str(tmp_path / "bank.db")
    first = start(procs, db, tiny_encoder, tmp_path, ray_head)
    rows = [("retry", "good great lovely"), ("retry", "bad awful terrible")]
    with Client(first.address, timeout=30) as c:
        c.wait_job(c.create_train_job("retry", "tiny", DATA, hyperparameters=SHORT).name, timeout=240)
    patient = Client(first.address, timeout=180, wait_for_ready=True)
    plain = Client(first.address, timeout=30)
    try:
        expected = [p.scores for p in plain.classify(rows)]
        job = plain.create_train_job("retry", "tiny", DATA, hyperparameters=SHORT, request_id="once")
        first.kill()
        answers: list[object] = []
        waiting = threading.Thread(target=lambda: answers.append([p.scores for p in patient.classify(rows)]))
        waiting.start()  # no server listens now: the call waits for one instead of failing
        time.sleep(2.0)
        assert waiting.is_alive() and not answers
        second = start(procs, db, tiny_encoder, tmp_path, ray_head, port=first.port)
        waiting.join(180)
        assert answers and same_scores(answers[0], expected)
        # a fail-fast client whose channel saw the server die: reconnects and retries on its own
        assert same_scores([p.scores for p in plain.classify(rows)], expected)
        again = plain.create_train_job("retry", "tiny", DATA, hyperparameters=SHORT, request_id="once")
        assert again.name == job.name  # a create repeated with its request_id is the same job, not a second
        assert plain.wait_job(job.name, timeout=240).state == jp.TrainJob.SUCCEEDED
        assert versions(db, "retry") == [1, 2]
        assert second.proc.poll() is None
    finally:
        patient.close()
        plain.close()
