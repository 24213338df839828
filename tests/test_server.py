"""The running service over real gRPC on loopback, real Ray actors and a real SQLite file."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import update

from bank.models import PromptVersion
from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp
from tests.workers_util import classify
from workers.actor import BackboneWorker

POS = ["good great lovely", "wonderful happy joy", "nice excellent fine", "love it so much"]
NEG = ["bad awful terrible", "sad horrible hate", "poor dreadful worse", "i hate this thing"]
DATA = [(t, "positive") for t in POS] * 8 + [(t, "negative") for t in NEG] * 8
TOPIC = [("the match ended two nil", "sports"), ("parliament passed the bill", "politics"),
         ("the striker scored twice", "sports"), ("the senator gave a speech", "politics")] * 8


def input_hp(**fields: Any) -> jp.Hyperparameters:
    """An input prompt's hyperparameters. A job that names no kind trains a deep prompt; the tests of the
    service's other parts pin the input kind, and deep prompts have their own tests (test_deep_*.py)."""
    return jp.Hyperparameters(prompt_kind=cat.PROMPT_KIND_INPUT, **fields)


HP = input_hp(num_virtual_tokens=4, epochs=2, batch_size=8, learning_rate=0.05)


def train(client: Client, prompt: str, backbone: str = "tiny-enc", data=DATA, hyperparameters=HP, **kw) -> jp.TrainJob:  # type: ignore[no-untyped-def]
    job = client.create_train_job(prompt, backbone, data, hyperparameters=hyperparameters, **kw)
    assert job.state == jp.TrainJob.QUEUED and job.name.startswith("jobs/")
    done = client.wait_job(job.name, timeout=300)
    assert done.state == jp.TrainJob.SUCCEEDED, done.error
    return done


def code_of(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_health_and_reflection(server) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(server.address) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
        names = {s.name for s in resp.list_services_response.service}
        assert {"promptbank.v1.PromptCatalog", "promptbank.v1.TrainJobs", "promptbank.v1.Inference"} <= names


def test_train_version_classify_through_the_server(client: Client) -> None:
    done = train(client, "e2e-sent", aliases=["prod"])
    assert done.result_version == "prompts/e2e-sent/versions/1"
    assert set(done.metrics) >= {"eval_accuracy", "majority_rate", "train_seconds"}
    v = client.get_version("e2e-sent@prod")
    assert v.name == done.result_version and sorted(v.aliases) == ["latest", "prod"]
    assert v.lineage.job == done.name and v.shape == [4, 32] and len(v.sha256) == 64
    preds = client.classify([("e2e-sent", t) for t in POS + NEG])
    assert all(p.version == done.result_version for p in preds)
    assert all(abs(sum(p.scores.values()) - 1) < 1e-6 and p.label == max(p.scores, key=p.scores.get) for p in preds)
    # a second job makes version 2 and moves latest, not prod
    done2 = train(client, "e2e-sent")
    assert done2.result_version == "prompts/e2e-sent/versions/2"
    prompt = client.get_prompt("e2e-sent")
    assert dict(prompt.aliases) == {"latest": 2, "prod": 1} and prompt.latest_version == 2


def test_watch_streams_every_event_in_order(client: Client) -> None:
    job = client.create_train_job("e2e-watch", "tiny-enc", DATA, hyperparameters=HP)
    events = list(client.watch_job(job.name, timeout=300))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    states = [e.state for e in events if e.kind == jp.TrainJobEvent.STATE_CHANGED]
    assert states == [jp.TrainJob.QUEUED, jp.TrainJob.RUNNING, jp.TrainJob.SUCCEEDED]
    progress = [e for e in events if e.kind == jp.TrainJobEvent.PROGRESS]
    assert progress and all(e.total_steps == progress[0].total_steps and e.loss > 0 for e in progress)
    assert "eval_accuracy" in events[-1].metrics


def test_mixed_backbones_and_tasks_in_one_request_match_single_task_requests(client: Client) -> None:
    train(client, "mix-sent")
    train(client, "mix-topic", data=TOPIC)
    train(client, "mix-lm", backbone="tiny-lm", label_words=["bad", "good"], labels=["negative", "positive"])
    rows = [("mix-sent", "so good"), ("mix-topic", "the goalkeeper saved"), ("mix-lm", "awful stuff"),
            ("mix-sent", "terrible"), ("mix-topic", "a vote in congress"), ("mix-lm", "lovely")]
    mixed = client.classify(rows)
    for (ref, text), got in zip(rows, mixed, strict=True):
        alone = client.classify([(ref, text)])[0]
        assert got.label == alone.label and got.version == alone.version
        for label, score in alone.scores.items():
            assert got.scores[label] == pytest.approx(score, abs=1e-5)
    assert set(mixed[1].scores) == {"politics", "sports"}


def test_training_leaves_the_served_backbone_bit_identical(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    replica = server.coord.pool.get("tiny-enc").replicas[0].handle
    before = ray.get(replica.parameter_digest.remote())
    train(client, "digest")
    assert ray.get(replica.parameter_digest.remote()) == before


def test_bad_requests_get_clear_status_codes(client: Client) -> None:
    code, msg = code_of(lambda: client.classify([("no-such-task", "hi")]))
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-task" in msg
    code, msg = code_of(lambda: client.classify([]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "rows is empty" in msg
    code, msg = code_of(lambda: client.classify([("x", "a" * 501)]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rows[0].text: characters is 501; the limit is 500" in msg
    assert "--limit-text-chars" in msg
    code, msg = code_of(lambda: client.classify([("x", "t")] * 65))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rows (ensemble members counted) is 65" in msg
    code, msg = code_of(lambda: client.classify_ensemble([(["x", "y"], "t")] * 33))  # 33 rows, 66 members
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "is 66; the limit is 64" in msg
    code, msg = code_of(lambda: client.classify([("Bad Ref!", "t")]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Bad Ref!" in msg
    code, msg = code_of(lambda: client.get_job("jobs/doesnotexist"))
    assert code == grpc.StatusCode.NOT_FOUND and "doesnotexist" in msg
    code, msg = code_of(lambda: client.create_train_job("x1", "no-such-bb", DATA))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no-such-bb" in msg
    code, msg = code_of(lambda: client.create_train_job("x2", "tiny-enc", [("a", "pos")] * 4))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "single label" in msg
    code, msg = code_of(lambda: client.create_train_job("x3", "tiny-enc", DATA, labels=["positive", "other"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'negative'" in msg
    code, msg = code_of(lambda: client.create_train_job("x4", "tiny-enc", DATA, hyperparameters=jp.Hyperparameters(learning_rate=-1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "learning_rate" in msg
    code, msg = code_of(lambda: client.create_train_job("x6", "tiny-enc", DATA, hyperparameters=jp.Hyperparameters(input_noise=-1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input_noise=-1" in msg
    code, msg = code_of(lambda: client.create_train_job("x7", "tiny-enc", DATA, hyperparameters=jp.Hyperparameters(ema_decay=1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ema_decay=1" in msg
    code, msg = code_of(lambda: client.create_train_job("x8", "tiny-enc", DATA,
                                                       hyperparameters=jp.Hyperparameters(token_dropout=-0.5)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "token_dropout=-0.5" in msg
    code, msg = code_of(lambda: client.create_train_job("x9", "tiny-enc", DATA,
                                                       hyperparameters=input_hp(prefix_projection=64)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "prefix_projection=64" in msg and "'deep'" in msg
    code, msg = code_of(lambda: client.create_train_job("x10", "tiny-enc", DATA,
                                                       hyperparameters=input_hp(max_grad_norm=-1.0)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "max_grad_norm=-1.0" in msg and "[0, 1e6]" in msg
    code, msg = code_of(lambda: client.create_train_job("x5", "tiny-lm", DATA, labels=["negative", "positive"],
                                                       label_words=["running", "running"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "distinct" in msg
    code, msg = code_of(lambda: client.catalog.ImportPromptVersion(cat.ImportPromptVersionRequest(), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_prompt_on_a_changed_backbone_is_refused(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    train(client, "pinned")
    server.coord.db.run_sync(lambda s: s.execute(update(PromptVersion).values(backbone_fingerprint="0" * 64)
                                                 .where(PromptVersion.sha256 == client.get_version("pinned").sha256)))
    code, msg = code_of(lambda: client.classify([("pinned", "hi")]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "fingerprint" in msg


def test_create_is_idempotent_on_request_id(client: Client) -> None:
    a = client.create_train_job("idem", "tiny-enc", DATA, hyperparameters=HP, request_id="req-1")
    b = client.create_train_job("idem", "tiny-enc", DATA, hyperparameters=HP, request_id="req-1")
    assert a.name == b.name
    code, msg = code_of(lambda: client.create_train_job("idem", "tiny-enc", DATA[::2], hyperparameters=HP,
                                                        request_id="req-1"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "req-1" in msg
    client.wait_job(a.name, timeout=300)


def test_cancel_a_running_job(client: Client) -> None:
    slow = input_hp(num_virtual_tokens=4, epochs=1000, batch_size=4, patience=10000)
    job = client.create_train_job("cancel-me", "tiny-enc", DATA, hyperparameters=slow)
    for ev in client.watch_job(job.name, timeout=120):
        if ev.kind == jp.TrainJobEvent.PROGRESS:
            break
    client.cancel_job(job.name)
    done = client.wait_job(job.name, timeout=120)
    assert done.state == jp.TrainJob.CANCELLED and done.step < done.total_steps
    code, msg = code_of(lambda: client.cancel_job(job.name))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already ended" in msg


def test_list_pagination(client: Client) -> None:
    train(client, "page-a")
    train(client, "page-b")
    first = client.catalog.ListPrompts(cat.ListPromptsRequest(page_size=1), timeout=10)
    assert len(first.prompts) == 1 and first.next_page_token
    second = client.catalog.ListPrompts(cat.ListPromptsRequest(page_size=1, page_token=first.next_page_token), timeout=10)
    assert second.prompts[0].name != first.prompts[0].name
    code, _ = code_of(lambda: client.catalog.ListPrompts(cat.ListPromptsRequest(page_size=1, page_token="garbage"), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    names = [p.name for p in client.list_prompts()]
    assert "prompts/page-a" in names and "prompts/page-b" in names and len(names) == len(set(names))
    names = [b.name for b in client.list_backbones()]
    assert names == sorted(names) and {"backbones/tiny-enc", "backbones/tiny-lm"} <= set(names)


def test_in_process_worker_agrees_with_the_served_one(server, client: Client, tiny_encoder: str) -> None:  # type: ignore[no-untyped-def]
    """What the service returns is the worker's math: same logits in-process as through gRPC and Ray."""
    train(client, "agree")
    v = client.get_version("agree", include_tensor=True)
    local = BackboneWorker(tiny_encoder, num_threads=1)
    logits = classify(local, [(v.sha256, "so good")], {v.sha256: v.tensor},
                            {v.sha256: {"labels": ["negative", "positive"]}})[0]
    import math

    z = sum(math.exp(x) for x in logits)
    got = client.classify([("agree", "so good")])[0].scores
    assert got["positive"] == pytest.approx(math.exp(logits[1]) / z, abs=1e-6)
