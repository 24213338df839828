"""A hostile tenant on a real server with `--auth tokens` (an admin, three trainers, a reader): issue 30, items 1
(a trainer's job publishes and moves aliases only on prompts it created; `latest` is never named), 2 (uploads
are their uploader's), 3 (every text field has a limit; list pages are bounded in bytes), 6 (request ids belong
to their principal), 9 (a NUL or an over-long dataset path is INVALID_ARGUMENT; errors name no server path),
10 (inline examples count against the storage quota) and 12 (WatchTrainJob streams are capped per principal)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coordinator.config import BackboneSpec, ServerConfig
from coordinator.limits import Limits
from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp
from promptbank_api.v1 import jobs_pb2_grpc as jp_grpc
from tests.conftest import LiveServer
from tests.test_server import DATA, code_of, input_hp

ADMIN = "pbt_hostile-admin-secret-0123456789abcdef012345"
HP = input_hp(num_virtual_tokens=2, epochs=1, batch_size=8)
QUICK = input_hp(num_virtual_tokens=2, epochs=1, batch_size=8, max_steps=1)
MESSAGE = 1 << 20  # the server's message limit: list pages must stay under it whatever the prompts hold
QUOTA = 40_000  # bytes each principal may store in uploads and unfinished jobs' inline examples
TRAINERS = ("ann", "bob", "cal", "dan")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-data")


@pytest.fixture(scope="module")
def hostile(ray_session: None, tiny_encoder: str, data_root: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    limits = Limits(message_bytes=MESSAGE, description_chars=100_000, upload_storage=QUOTA, watch_streams=2)
    cfg = ServerConfig(port=0, db=str(tmp_path_factory.mktemp("hostile") / "b.db"), auth="tokens", admin_token=ADMIN,
                       worker_cpus=0.25, grace_seconds=0.5, limits=limits, data_roots=(str(data_root),),
                       backbones=(BackboneSpec("enc", tiny_encoder),))
    live = LiveServer(cfg)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def secrets(hostile: LiveServer) -> dict[str, str]:
    """Token secrets by principal: trainers ann, bob, cal and dan, reader rita, and the admin."""
    with Client(hostile.address, token=ADMIN) as admin:
        out = {name: admin.create_token(name, "trainer").secret for name in TRAINERS}
        out["rita"] = admin.create_token("rita", "reader").secret
    return {**out, "admin": ADMIN}


def client(live: LiveServer, secrets: dict[str, str], who: str) -> Client:
    return Client(live.address, token=secrets[who], timeout=60)


def rows(n: int, labels: tuple[str, str] = ("positive", "negative")) -> list[tuple[str, str]]:
    return [(f"word word word word {i}", labels[i % 2]) for i in range(n)]


def test_a_trainer_publishes_and_moves_aliases_only_on_its_own_prompts(hostile: LiveServer,
                                                                      secrets: dict[str, str]) -> None:
    """Item 1: `prod` on an admin's prompt stays where the admin put it; `latest` follows no other trainer."""
    with client(hostile, secrets, "admin") as admin, client(hostile, secrets, "ann") as ann, \
            client(hostile, secrets, "bob") as bob:
        first = admin.wait_job(admin.create_train_job("hz-admin-task", "enc", DATA, hyperparameters=HP,
                                                      aliases=["prod"]).name, timeout=300)
        assert first.state == jp.TrainJob.SUCCEEDED, first.error
        for aliases in (["prod"], []):  # an alias, or only `latest` (every publish moves it)
            code, msg = code_of(lambda a=aliases: bob.create_train_job("hz-admin-task", "enc", DATA, hyperparameters=HP,
                                                                       aliases=a))
            assert code == grpc.StatusCode.PERMISSION_DENIED, (code, msg)
            assert "'hz-admin-task'" in msg and "created by another principal" in msg
        assert [j.principal for j in admin.list_jobs(prompt="hz-admin-task")] == ["admin"]  # nothing was committed
        assert dict(admin.get_prompt("hz-admin-task").aliases) == {"latest": 1, "prod": 1}

        mine = ann.wait_job(ann.create_train_job("hz-ann", "enc", DATA, hyperparameters=HP, aliases=["prod"]).name,
                            timeout=300)
        assert mine.state == jp.TrainJob.SUCCEEDED, mine.error  # a prompt it creates by training is its own
        assert [(e.alias, e.principal) for e in admin.alias_history("hz-ann")] == [("prod", "ann"), ("latest", "ann")]
        code, msg = code_of(lambda: bob.create_train_job("hz-ann", "enc", DATA, hyperparameters=HP))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "'hz-ann'" in msg
        code, msg = code_of(lambda: ann.create_train_job("hz-ann", "enc", DATA, hyperparameters=HP, aliases=["latest"]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "'latest'" in msg
        again = admin.wait_job(admin.create_train_job("hz-ann", "enc", DATA, hyperparameters=HP,
                                                      aliases=["prod"]).name, timeout=300)
        assert again.state == jp.TrainJob.SUCCEEDED and admin.get_prompt("hz-ann").aliases["prod"] == 2  # admins: anywhere


def test_an_upload_is_usable_only_by_its_uploader(hostile: LiveServer, secrets: dict[str, str]) -> None:
    """Item 2: naming another principal's upload is PERMISSION_DENIED before a row is read: no label leaks."""
    secret_labels = ("ann-secret-a", "ann-secret-b")
    with client(hostile, secrets, "ann") as ann, client(hostile, secrets, "bob") as bob, \
            client(hostile, secrets, "admin") as admin:
        up = ann.upload_dataset(rows(40, secret_labels))
        for labels in ((), ("x", "y")):  # other labels once made the error list the upload's
            code, msg = code_of(lambda lab=labels: bob.create_train_job("hz-bob-up", "enc", dataset_uri=up.name,
                                                                        labels=lab, hyperparameters=HP))
            assert code == grpc.StatusCode.PERMISSION_DENIED and up.name in msg and "another principal" in msg
            assert "ann-secret" not in msg
        assert bob.list_jobs(prompt="hz-bob-up") == []
        for owner in (ann, admin):  # its uploader, and admins
            job = owner.create_train_job("hz-ann-up", "enc", dataset_uri=up.name, hyperparameters=QUICK)
            assert owner.wait_job(job.name, timeout=300).state == jp.TrainJob.SUCCEEDED


def test_every_text_field_has_a_limit(hostile: LiveServer, secrets: dict[str, str]) -> None:
    """Item 3: each too-long field is refused before anything is stored, naming the field, limit and flag."""
    with client(hostile, secrets, "admin") as admin, client(hostile, secrets, "ann") as ann:
        too_much = [
            (lambda: admin.create_prompt("hz-f", ["a", "b"], description="d" * 100_001), "task.description",
             "--limit-description-chars"),
            (lambda: admin.create_prompt("hz-f", ["a", "b"], tags=[f"t{i}" for i in range(65)]), "tags",
             "--limit-tags"),
            (lambda: admin.create_prompt("hz-f", ["a", "b"], tags=["t" * 129]), "tag", "--limit-tag-chars"),
            (lambda: admin.create_prompt("hz-f", ["a", "b"], owner="o" * 129), "owner", "--limit-owner-chars"),
            (lambda: admin.create_prompt("hz-f", ["a", "b"], request_id="r" * 129), "request_id",
             "--limit-field-chars"),
            (lambda: ann.create_train_job("hz-f", "enc", DATA, aliases=[f"a{i}" for i in range(17)]), "job.aliases",
             "--limit-job-aliases"),
            (lambda: ann.create_train_job("hz-f", "enc", dataset_uri="x.csv", text_column="c" * 129),
             "dataset.text_column", "--limit-field-chars"),
        ]
        for call, field, flag in too_much:
            code, msg = code_of(call)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and field in msg and flag in msg, (code, msg)
            assert "the limit is" in msg
        code, msg = code_of(lambda: admin.create_prompt("hz-f", ["a", "b"], owner="o\x00"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "NUL" in msg
        code, msg = code_of(lambda: admin.create_token("t" * 65, "reader"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "1-64" in msg
        code, _ = code_of(lambda: admin.get_prompt("hz-f"))
        assert code == grpc.StatusCode.NOT_FOUND  # nothing was stored
        admin.create_prompt("hz-f", ["a", "b"], description="ok")
        code, msg = code_of(lambda: admin.update_prompt("hz-f", description="d" * 100_001))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--limit-description-chars" in msg
        code, msg = code_of(lambda: admin.update_prompt("hz-f", tags=["t" * 129]))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--limit-tag-chars" in msg
        assert admin.get_prompt("hz-f").task.description == "ok"


def test_large_prompts_still_list_in_pages_under_the_message_limit(hostile: LiveServer,
                                                                    secrets: dict[str, str]) -> None:
    """Item 3: prompts as large as the limits allow never make a list page pass the message limit."""
    big = "d" * 95_000
    with client(hostile, secrets, "admin") as admin, client(hostile, secrets, "rita") as reader:
        for i in range(15):  # 1.4 MB of descriptions: one page of 50 rows would be over the 1 MiB message limit
            admin.create_prompt(f"hz-big-{i:02d}", ["a", "b"], description=big)
        page = reader.catalog.ListPrompts(cat.ListPromptsRequest(page_size=1000), timeout=60)
        assert 0 < page.ByteSize() < MESSAGE // 2 and page.next_page_token
        listed = [p.name for p in reader.list_prompts()]
        assert [n for n in listed if n.startswith("prompts/hz-big-")] == [f"prompts/hz-big-{i:02d}" for i in range(15)]
        assert len(listed) == len(set(listed))  # every prompt once: the pages neither overlap nor skip


def test_request_ids_belong_to_their_principal(hostile: LiveServer, secrets: dict[str, str]) -> None:
    """Item 6: another principal's request_id is no key of mine: reusing it gets a fresh create, never theirs."""
    with client(hostile, secrets, "ann") as ann, client(hostile, secrets, "bob") as bob:
        mine = ann.upload_dataset(DATA, request_id="hz-shared-up")
        theirs = bob.upload_dataset(DATA, request_id="hz-shared-up")  # the same id and payload
        assert theirs.name != mine.name
        squat = bob.upload_dataset(DATA[:10], request_id="hz-squat")  # used first, by someone else
        assert ann.upload_dataset(DATA, request_id="hz-squat").name != squat.name  # no ALREADY_EXISTS for ann
        job = ann.create_train_job("hz-idem-ann", "enc", DATA, hyperparameters=QUICK, request_id="hz-shared-job")
        assert ann.create_train_job("hz-idem-ann", "enc", DATA, hyperparameters=QUICK,
                                    request_id="hz-shared-job").name == job.name  # a retry: the same job
        other = bob.create_train_job("hz-idem-bob", "enc", DATA, hyperparameters=QUICK, request_id="hz-shared-job")
        assert other.name != job.name and other.principal == "bob"
        code, _ = code_of(lambda: bob.create_train_job("hz-idem-bob2", "enc", DATA, hyperparameters=QUICK,
                                                       request_id="hz-shared-job"))
        assert code == grpc.StatusCode.ALREADY_EXISTS  # bob's own key, with another payload
        code, _ = code_of(lambda: bob.get_prompt("hz-idem-bob2"))
        assert code == grpc.StatusCode.NOT_FOUND  # the refused create left nothing behind
        for c, j in ((ann, job), (bob, other)):
            assert c.wait_job(j.name, timeout=300).state == jp.TrainJob.SUCCEEDED


def test_dataset_uris_fail_cleanly_and_name_no_server_path(hostile: LiveServer, secrets: dict[str, str],
                                                           data_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Item 9: NUL and over-long paths are INVALID_ARGUMENT with no traceback; refusals quote the URI as given."""
    caplog.set_level(logging.INFO, logger="promptbank")
    home = os.path.expanduser("~")
    with client(hostile, secrets, "ann") as ann:
        def refused(uri: str) -> tuple[grpc.StatusCode, str]:
            return code_of(lambda: ann.create_train_job("hz-uri", "enc", dataset_uri=uri))

        for uri in (f"{data_root}/x\x00.csv", "datasets/x\x00y", "x\x00"):
            code, msg = refused(uri)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "NUL" in msg, (uri, code, msg)
        code, msg = refused(f"{data_root}/{'a' * 300}.csv")  # one name longer than the file system allows
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a usable path" in msg, (code, msg)
        code, msg = refused(f"{data_root}/{'a/' * 2_100}x.csv")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--limit-uri-chars" in msg
        for uri in ("~/secret.csv", "/etc/passwd.csv", "../../etc/hosts.csv"):
            code, msg = refused(uri)
            assert code == grpc.StatusCode.PERMISSION_DENIED and f"{uri!r} is outside the server's data roots" in msg
            assert str(data_root) not in msg and home not in msg, msg
        (data_root / "bad.jsonl").write_text("not json\n")
        code, msg = refused(str(data_root / "bad.jsonl"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not JSON" in msg
    assert any("INVALID_ARGUMENT" in r.getMessage() for r in caplog.records)  # the log was read...
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], "a traceback was logged"


def test_inline_examples_count_against_the_storage_quota(hostile: LiveServer, secrets: dict[str, str]) -> None:
    """Item 10: a job's inline examples count while it lives, in the quota uploads obey; once it ends, not."""
    with client(hostile, secrets, "cal") as cal:
        code, msg = code_of(lambda: cal.create_train_job("hz-cal", "enc", rows(1_200), hyperparameters=QUICK))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "'cal'" in msg and "--limit-upload-storage" in msg
        first = cal.create_train_job("hz-cal", "enc", rows(700), hyperparameters=QUICK)  # ~30 KB of 40 KB
        code, msg = code_of(lambda: cal.create_train_job("hz-cal", "enc", rows(700), hyperparameters=QUICK))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--limit-upload-storage" in msg  # the first is queued
        code, msg = code_of(lambda: cal.upload_dataset(rows(700)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--limit-upload-storage" in msg  # one quota for both
        assert cal.wait_job(first.name, timeout=300).state == jp.TrainJob.SUCCEEDED
        second = cal.create_train_job("hz-cal", "enc", rows(700), hyperparameters=QUICK)  # the first ended
        assert cal.wait_job(second.name, timeout=300).state == jp.TrainJob.SUCCEEDED


def _open_watch(stub: jp_grpc.TrainJobsStub, job: str, token: str) -> tuple[grpc.Future, jp.TrainJobEvent]:
    """A WatchTrainJob stream and its first event (so the server holds the stream)."""
    call = stub.WatchTrainJob(jp.WatchTrainJobRequest(name=job), timeout=120,
                              metadata=[("authorization", f"Bearer {token}")])
    return call, next(call)


def test_watch_streams_are_capped_per_principal(hostile: LiveServer, secrets: dict[str, str]) -> None:
    """Item 12: a principal's third concurrent watch is RESOURCE_EXHAUSTED; a stream that ends frees its slot."""
    with client(hostile, secrets, "dan") as dan, client(hostile, secrets, "admin") as admin, \
            grpc.insecure_channel(hostile.address) as ch:
        stub = jp_grpc.TrainJobsStub(ch)
        long = dan.create_train_job("hz-dan", "enc", rows(600), eval_fraction=0,  # no eval: no early stop
                                    hyperparameters=input_hp(num_virtual_tokens=2, epochs=1000, batch_size=8))
        try:
            held = [_open_watch(stub, long.name, secrets["dan"])[0] for _ in range(2)]
            with pytest.raises(grpc.RpcError) as err:
                _open_watch(stub, long.name, secrets["dan"])
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "'dan'" in err.value.details() and "--limit-watch-streams" in err.value.details()
            other, _ = _open_watch(stub, long.name, ADMIN)  # the cap is per principal
            held[0].cancel()  # a stream that ends frees its slot
            deadline = time.monotonic() + 10
            while True:
                try:
                    held[0] = _open_watch(stub, long.name, secrets["dan"])[0]
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                    time.sleep(0.2)
            for call in (*held, other):
                call.cancel()
        finally:
            dan.cancel_job(long.name)
        assert admin.wait_job(long.name, timeout=300).state == jp.TrainJob.CANCELLED
        for _ in range(3):  # streams that run to the job's end free theirs too
            assert list(dan.watch_job(long.name, timeout=60))[-1].state == jp.TrainJob.CANCELLED
