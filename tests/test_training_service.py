"""Training through the service: co-batched jobs, resume after a replica dies, nearest init, checkpoints."""

from __future__ import annotations

import ray
import torch

from bank import jobs as jobstore
from bank.codec import decode_prompt
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.test_server import DATA, TOPIC, input_hp, train


def messages(client: Client, job: str) -> list[str]:
    return [e.message for e in client.watch_job(job, timeout=60)]


def wait_for_step(client: Client, job: str, step: int) -> None:
    for ev in client.watch_job(job, timeout=120):
        if ev.kind == jp.TrainJobEvent.PROGRESS and ev.step >= step:
            return
    raise AssertionError(f"{job} ended before step {step}")


def test_queued_jobs_train_together_and_each_equals_training_alone(client: Client) -> None:
    blocker = client.create_train_job("cob-block", "tiny-enc", DATA, hyperparameters=input_hp(
        num_virtual_tokens=2, epochs=1000, batch_size=4, patience=10000))
    wait_for_step(client, blocker.name, 1)  # the replica is busy: the next jobs queue up together
    # fp32: exact up to summation order. Under bf16 autocast ("auto" on a bf16 CPU) a row's rounding depends
    # on the GEMM shapes of its forward, which token dropout's varying lengths change (bf16 co-batching is
    # tested in test_train.py at bf16 tolerance).
    hps = [input_hp(num_virtual_tokens=3, epochs=2, batch_size=8, seed=1, learning_rate=0.1, precision="fp32",
                              token_dropout=0.2),
           input_hp(num_virtual_tokens=5, epochs=3, batch_size=6, seed=2, learning_rate=0.05, precision="fp32"),
           input_hp(num_virtual_tokens=2, epochs=2, batch_size=4, seed=3, input_noise=0.0, precision="fp32",
                              ema_decay=0.0)]  # noise and averaging off
    datas = [DATA, TOPIC, DATA[::2]]
    jobs = [client.create_train_job(f"cob-{i}", "tiny-enc", d, hyperparameters=h)
            for i, (d, h) in enumerate(zip(datas, hps, strict=True))]
    client.cancel_job(blocker.name)
    done = [client.wait_job(j.name, timeout=300) for j in jobs]
    assert all(d.state == jp.TrainJob.SUCCEEDED for d in done), [d.error for d in done]
    assert all(any("co-batched with 2 other job(s)" in m for m in messages(client, j.name)) for j in jobs)
    noise = [client.get_job(j.name).hyperparameters for j in jobs]
    assert [h.input_noise for h in noise] == [5.0, 5.0, 0.0] and all(h.HasField("input_noise") for h in noise)
    assert [h.ema_decay for h in noise] == [0.998, 0.998, 0.0] and all(h.HasField("ema_decay") for h in noise)
    assert [h.token_dropout for h in noise] == [0.2, 0.0, 0.0] and all(h.HasField("token_dropout") for h in noise)
    # the same jobs one at a time (each alone on the idle replica) give the same prompts
    for i, (d, h) in enumerate(zip(datas, hps, strict=True)):
        alone = train(client, f"cob-alone-{i}", data=d, hyperparameters=h)
        a = decode_prompt(client.get_version(alone.result_version, include_tensor=True).tensor)
        b = decode_prompt(client.get_version(done[i].result_version, include_tensor=True).tensor)
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
        assert not any("co-batched" in m for m in messages(client, alone.name))


def test_a_job_resumes_from_its_checkpoint_when_its_replica_dies(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    hp = input_hp(num_virtual_tokens=2, epochs=60, batch_size=8, patience=10000, checkpoint_every=5)
    job = client.create_train_job("phoenix", "tiny-enc", DATA, hyperparameters=hp)
    wait_for_step(client, job.name, 12)
    job_id = job.name.split("/")[1]
    saved = server.coord.db.run_sync(lambda s: jobstore.latest_checkpoint(s, job_id).step)
    assert saved >= 5
    ray.kill(server.coord.pool.get("tiny-enc").replicas[0].handle, no_restart=False)  # Ray restarts it
    done = client.wait_job(job.name, timeout=300)
    assert done.state == jp.TrainJob.SUCCEEDED, done.error
    msgs = messages(client, job.name)
    assert any(m.startswith("the replica died; will resume from checkpoint at step") for m in msgs), msgs
    resumed = [m for m in msgs if m.startswith("resuming from step")]
    assert resumed and "(attempt 2" in resumed[0] and int(resumed[0].split()[3]) >= saved
    assert done.step == done.total_steps and done.result_version == "prompts/phoenix/versions/1"


def test_cancel_keeps_the_last_checkpoint(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    hp = input_hp(num_virtual_tokens=2, epochs=1000, batch_size=4, patience=10000, checkpoint_every=1000)
    job = client.create_train_job("keep-ckpt", "tiny-enc", DATA, hyperparameters=hp)
    wait_for_step(client, job.name, 3)
    client.cancel_job(job.name)
    done = client.wait_job(job.name, timeout=120)
    assert done.state == jp.TrainJob.CANCELLED
    step = server.coord.db.run_sync(lambda s: jobstore.latest_checkpoint(s, job.name.split("/")[1]).step)
    assert step >= 3 and step == done.step  # the checkpoint taken at the cancel is the one kept
    assert f"cancelled at step {done.step}; last checkpoint kept" in messages(client, job.name)


def test_init_from_a_stored_version_and_nearest(client: Client) -> None:
    src = train(client, "init-src")
    train(client, "init-topic", data=TOPIC)
    hp = input_hp(num_virtual_tokens=4, epochs=1, batch_size=8, init="init-src@latest")
    ref = train(client, "init-ref", hyperparameters=hp)
    assert client.get_version(ref.result_version).lineage.init == "init-src@latest"
    near = train(client, "init-near", hyperparameters=input_hp(num_virtual_tokens=4, epochs=1, init="nearest"))
    init = client.get_version(near.result_version).lineage.init
    assert init.startswith("nearest:prompts/") and "candidates" in init and "init-near" not in init
    assert src.result_version


def test_plot_draws_loss_and_accuracy(server, client: Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli import cli

    done = train(client, "plotted")
    out = tmp_path / "job.png"
    cli(server, "jobs", "plot", done.name, "--out", str(out))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


