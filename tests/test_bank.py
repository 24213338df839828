"""The SQL bank on a real SQLite file and a real PostgreSQL: versions, aliases, refs, transactions, codec safety."""

from __future__ import annotations

import pickle
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import text

from bank import catalog, datasets, jobs
from bank.codec import decode_prompt, encode_prompt, sha256_hex
from bank.db import BUSY_WAIT_MS, make_engine, make_sessionmaker
from bank.models import Job, PromptVersion
from promptbank_api.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from promptbank_api.names import parse_ref
from promptbank_domain.jobs import JobSpec
from promptbank_domain.task import TaskSpec
from promptbank_domain.train_config import TrainConfig
from tests.pg_fixtures import BACKENDS, fresh_db_url


@pytest.fixture(params=BACKENDS)
def sessions(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Each test runs once on SQLite and once on PostgreSQL, each time on a fresh, empty database."""
    engine = make_engine(fresh_db_url(request, request.param, tmp_path))
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture()
def sqlite_sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(str(tmp_path / "bank.db"))
    yield make_sessionmaker(engine)
    engine.dispose()


TASK = TaskSpec(labels=("neg", "pos"))
SPEC = JobSpec(task=TASK, config=TrainConfig())


def seed(s, hidden: int = 8):  # type: ignore[no-untyped-def]
    bb = catalog.upsert_backbone(s, "bb", model="m", revision="", architecture="encoder", hidden_size=hidden,
                               fingerprint="f" * 64)
    p = catalog.create_prompt(s, "sent", TASK)
    return bb, p


def test_sqlite_is_wal_with_busy_timeout(sqlite_sessions) -> None:  # type: ignore[no-untyped-def]
    with sqlite_sessions() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_WAIT_MS
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_switching_to_wal_waits_for_a_writer(tmp_path: Path) -> None:
    """The WAL switch reads the header, then upgrades to a write lock; SQLite calls no busy handler on such an
    upgrade (it could deadlock), so a server starting beside another one's write lock must wait by itself."""
    path = tmp_path / "bank.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")  # a reserved (write) lock on a rollback-journal file
    timer = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    timer.start()
    try:
        engine = make_engine(str(path))  # without the retry: "database is locked" at once
    finally:
        timer.join()
        writer.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_concurrent_publishes_to_one_prompt_all_land(sessions) -> None:  # type: ignore[no-untyped-def]
    """Two coordinators on one bank publishing to one prompt: each version gets its own number, none fails."""
    with sessions() as s:
        seed(s)
        s.commit()
    errors: list[BaseException] = []

    def publish(n: int) -> None:
        for _ in range(n):
            try:
                with sessions() as s:
                    catalog.add_version(s, "sent", "bb", encode_prompt(torch.randn(2, 8)))
                    s.commit()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=publish, args=(6,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with sessions() as s:
        p = catalog.get_prompt(s, "sent")
        assert p.latest_version == 24
        assert sorted(v.version for v in catalog.list_versions(s, "sent", 0, 100)) == list(range(1, 25))
        assert catalog.resolve(s, "sent").version == 24


def test_a_prompt_loaded_before_another_publish_numbers_the_next_version(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        seed(s)
        s.commit()
    with sessions() as a, sessions() as b:
        loaded = catalog.get_prompt(a, "sent")  # as SQL session `a` sees it (and keeps it): latest_version 0
        catalog.add_version(b, "sent", "bb", encode_prompt(torch.randn(2, 8)))
        b.commit()
        v = catalog.add_version(a, "sent", "bb", encode_prompt(torch.randn(2, 8)))
        a.commit()
        assert (loaded.latest_version, v.version, catalog.get_prompt(a, "sent").latest_version) == (0, 2, 2)
        assert catalog.resolve(a, "sent").version == 2


def test_versions_aliases_and_refs(sessions) -> None:  # type: ignore[no-untyped-def]
    t1, t2 = torch.randn(3, 8), torch.randn(5, 8)
    with sessions() as s:
        bb, p = seed(s)
        v1 = catalog.add_version(s, p.name, bb.name, encode_prompt(t1), metrics={"eval_accuracy": 0.8},
                                 lineage={"job": "jobs/1"})
        catalog.add_version(s, p.name, bb.name, encode_prompt(t2), aliases=["prod"])
        assert catalog.set_alias(s, p.name, "prod", v1.version).name == "prompts/sent/versions/1"
        s.commit()
    with sessions() as s:
        assert catalog.resolve(s, "sent").version == 2  # latest
        assert catalog.resolve(s, "sent@prod").version == 1
        assert catalog.resolve(s, "sent@prod").aliases == ("prod",) and catalog.resolve(s, "sent").tensor == b""
        v = catalog.resolve(s, "prompts/sent/versions/2", tensor=True)
        assert v.shape == (5, 8) and v.dtype == "float32" and v.sha256 == sha256_hex(v.tensor)
        torch.testing.assert_close(decode_prompt(v.tensor), t2)
        assert catalog.resolve(s, "sent/versions/1").metrics == {"eval_accuracy": 0.8}
        hist = [(e.alias, e.from_version, e.to_version) for e in catalog.alias_history(s, "sent", 0, 10)]
        assert hist[0] == ("prod", 2, 1) and ("latest", 1, 2) in hist and ("latest", 0, 1) in hist
        with pytest.raises(NotFound, match="alias 'staging'"):
            catalog.resolve(s, "sent@staging")
        with pytest.raises(NotFound, match="version 9"):
            catalog.resolve(s, "sent/versions/9")
        with pytest.raises(NotFound, match="prompt 'nope'"):
            catalog.resolve(s, "nope")


def test_delete_version_under_alias_needs_force(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        bb, p = seed(s)
        v = catalog.add_version(s, p.name, bb.name, encode_prompt(torch.randn(2, 8)))
        with pytest.raises(FailedPrecondition, match=r"by alias \['latest'\]; move it or delete with force \(the CLI's --force\)"):
            catalog.delete_version(s, v.name, force=False)
        catalog.delete_version(s, v.name, force=True)
        s.commit()
        assert s.query(PromptVersion).count() == 0


def test_a_bad_version_commits_nothing(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        seed(s)
        s.commit()
    with sessions() as s:
        with pytest.raises(FailedPrecondition, match="hidden size 8"):
            catalog.add_version(s, "sent", "bb", encode_prompt(torch.randn(2, 16)))
        s.rollback()
    with sessions() as s:
        assert catalog.get_prompt(s, "sent").latest_version == 0
        assert s.query(PromptVersion).count() == 0


def test_duplicate_prompt_and_bad_names(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        seed(s)
        with pytest.raises(AlreadyExists):
            catalog.create_prompt(s, "sent", TASK)
        with pytest.raises(InvalidArgument, match="invalid prompt name 'Bad Name'"):
            catalog.create_prompt(s, "Bad Name", TASK)
    with pytest.raises(InvalidArgument, match="invalid prompt reference"):
        parse_ref("a/b/c")


def test_codec_refuses_pickle_and_garbage() -> None:
    with pytest.raises(InvalidArgument, match="pickle"):
        decode_prompt(pickle.dumps({"prompt_embeddings": [1.0]}))
    with pytest.raises(InvalidArgument, match="safetensors"):
        decode_prompt(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")


def test_jobs_idempotency_and_events(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        a, created = jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=b"",
                                     request_id="r1", request_hash="h1")
        b, again = jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=b"",
                                   request_id="r1", request_hash="h1")
        assert created and not again and a.id == b.id
        with pytest.raises(AlreadyExists, match="request_id 'r1'"):
            jobs.create_job(s, prompt_name="x", backbone_name="bb", spec=SPEC, examples=b"", request_id="r1",
                            request_hash="h2")
        assert jobs.claim(s, a.id, "coordinator-1", 30.0, "on replica 0") is not None
        assert not jobs.record_progress(s, a.id, "PROGRESS", owner="coordinator-1", step=3, total_steps=10, loss=0.5,
                                        metrics={}, examples_per_second=0.0, eta_seconds=0.0)
        assert jobs.get_job(s, a.id).step == 3 and jobs.get_job(s, a.id).spec.config == SPEC.config
        assert jobs.release(s, "coordinator-1", [a.id], "requeued") == [a.id] and jobs.get_job(s, a.id).state == "QUEUED"
        assert jobs.request_cancel(s, a.id).state == "CANCELLED"
        with pytest.raises(FailedPrecondition, match="already ended CANCELLED"):
            jobs.request_cancel(s, a.id)
        seqs = [e.sequence for e in jobs.events_after(s, a.id, 0)]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 5


def test_inline_examples_count_against_the_quota_until_the_job_ends(sessions) -> None:  # type: ignore[no-untyped-def]
    """Issue 30, item 10: a job's inline examples are its principal's stored bytes until it ends and drops them."""
    rows = datasets.encode_rows([("some text", "pos")] * 50)
    with sessions() as s:
        a, _ = jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=rows, principal="ann",
                               inline=True, quota=3 * len(rows))
        jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=rows, principal="ann")  # a file's
        assert datasets.stored_bytes(s, "ann") == len(rows) and datasets.stored_bytes(s, "bob") == 0
        jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=rows, principal="ann",
                        inline=True, quota=3 * len(rows))
        with pytest.raises(ResourceExhausted, match="would take .* the limit is .*--limit-upload-storage"):
            jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=rows, principal="ann",
                            inline=True, quota=3 * len(rows) - 1)
        jobs.request_cancel(s, a.id)  # ended: its examples are dropped and stop counting
        assert datasets.stored_bytes(s, "ann") == len(rows) and jobs.training_data(s, a.id) == b""
        s.commit()


def test_a_job_never_publishes_to_a_prompt_recreated_after_it_was_queued(sessions) -> None:  # type: ignore[no-untyped-def]
    """Who may publish was decided for the prompt the job was queued on: a namesake made later gets nothing."""
    with sessions() as s:
        seed(s)
        job, _ = jobs.create_job(s, prompt_name="sent", backbone_name="bb", spec=SPEC, examples=b"", principal="ann")
        row = s.get(Job, job.id)
        row.created_at = row.created_at - timedelta(seconds=1)  # queued a moment before the namesake below
        catalog.delete_prompt(s, "sent", force=True)
        catalog.create_prompt(s, "sent", TASK, created_by="bob")
        assert jobs.claim(s, job.id, "c1", 30.0, "here") is not None
        out = jobs.succeed(s, job.id, owner="c1", prompt=encode_prompt(torch.randn(2, 8)), metrics={}, step=1,
                           lineage={}, aliases=["prod"])
        job = jobs.get_job(s, job.id)
        assert out is None and job.state == "FAILED" and "deleted and created again" in job.error
        assert catalog.get_prompt(s, "sent").latest_version == 0 and catalog.get_prompt(s, "sent").aliases == {}


def test_list_prompts_filters_by_tag_and_backbone(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        bb, _ = seed(s)
        other = catalog.upsert_backbone(s, "other", model="m2", revision="", architecture="encoder", hidden_size=8,
                                      fingerprint="e" * 64)
        tags = {"a": ["en", "prod"], "b": ["eng"], "c": ["en", 'we"ird é'], "d": [], "e": ["en"]}
        for name, t in tags.items():
            catalog.create_prompt(s, name, TASK, tags=t)
            catalog.add_version(s, name, (other if name in "ce" else bb).name, encode_prompt(torch.randn(1, 8)))
        catalog.add_version(s, "e", bb.name, encode_prompt(torch.randn(1, 8)))
        s.commit()
    with sessions() as s:
        def names(**kw) -> list[str]:  # type: ignore[no-untyped-def]
            return [p.name for p in catalog.list_prompts(s, kw.pop("offset", 0), kw.pop("limit", 10), **kw)]

        assert names() == ["a", "b", "c", "d", "e", "sent"]
        assert names(tag="en") == ["a", "c", "e"]  # exact members: not "eng"
        assert names(tag='we"ird é') == ["c"] and names(tag="e") == [] and names(tag="nope") == []
        assert names(backbone="other") == ["c", "e"]
        assert names(backbone="bb") == ["a", "b", "d", "e"]  # `sent` has no versions
        assert names(tag="en", backbone="bb") == ["a", "e"]
        assert names(tag="en", offset=1, limit=1) == ["c"]
        assert names(backbone="missing") == []


def test_filters_by_label_time_and_version_fields(sessions) -> None:  # type: ignore[no-untyped-def]
    import time

    from bank.models import utcnow

    with sessions() as s:
        bb, sent = seed(s)
        other = catalog.upsert_backbone(s, "other", model="m2", revision="", architecture="encoder", hidden_size=8,
                                      fingerprint="e" * 64)
        catalog.create_prompt(s, "topic", TaskSpec(labels=("sports", "politics")))
        v1 = catalog.add_version(s, sent.name, bb.name, encode_prompt(torch.randn(1, 8)))
        assert catalog.set_version_tags(s, v1.name, ["golden"]).tags == ("golden",)
        s.commit()
        time.sleep(0.01)
        cut = utcnow()
        time.sleep(0.01)
        catalog.create_prompt(s, "late", TaskSpec(labels=("pos", "x")))
        catalog.add_version(s, sent.name, other.name, encode_prompt(torch.randn(1, 8)))
        s.commit()
    with sessions() as s:
        assert [p.name for p in catalog.list_prompts(s, 0, 10, label="pos")] == ["late", "sent"]
        assert [p.name for p in catalog.list_prompts(s, 0, 10, label="sports")] == ["topic"]
        assert [p.name for p in catalog.list_prompts(s, 0, 10, label="po")] == []
        assert [p.name for p in catalog.list_prompts(s, 0, 10, created_after=cut)] == ["late"]
        assert [p.name for p in catalog.list_prompts(s, 0, 10, label="pos", created_after=cut)] == ["late"]
        sent = "sent"
        assert [v.version for v in catalog.list_versions(s, sent, 0, 10)] == [2, 1]
        assert [v.version for v in catalog.list_versions(s, sent, 0, 10, backbone="other")] == [2]
        assert [v.version for v in catalog.list_versions(s, sent, 0, 10, tag="golden")] == [1]
        assert [v.version for v in catalog.list_versions(s, sent, 0, 10, created_after=cut)] == [2]


def test_request_ids_return_the_first_result(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        assert catalog.seen_request(s, "r1", "CreatePrompt", "h1", principal="ann") is None
        catalog.remember_request(s, "r1", "CreatePrompt", "h1", "prompts/a", principal="ann")
        s.commit()
    with sessions() as s:
        assert catalog.seen_request(s, "r1", "CreatePrompt", "h1", principal="ann") == "prompts/a"
        with pytest.raises(AlreadyExists, match="request_id 'r1'"):
            catalog.seen_request(s, "r1", "CreatePrompt", "h2", principal="ann")
        with pytest.raises(AlreadyExists, match="different CreatePrompt"):
            catalog.seen_request(s, "r1", "ImportPromptVersion", "h1", principal="ann")
        assert catalog.seen_request(s, "", "CreatePrompt", "h1", principal="ann") is None


def test_request_ids_belong_to_their_principal(sessions) -> None:  # type: ignore[no-untyped-def]
    """Another principal's use of an id neither returns the first result nor clashes with it (issue 30, item 6)."""
    with sessions() as s:
        catalog.remember_request(s, "r1", "CreatePrompt", "h1", "prompts/a", principal="ann")
        s.commit()
    with sessions() as s:
        assert catalog.seen_request(s, "r1", "CreatePrompt", "h1", principal="bob") is None
        assert catalog.seen_request(s, "r1", "CreatePrompt", "h2", principal="bob") is None  # no ALREADY_EXISTS
        catalog.remember_request(s, "r1", "CreatePrompt", "h2", "prompts/b", principal="bob")
        s.commit()
    with sessions() as s:
        assert catalog.seen_request(s, "r1", "CreatePrompt", "h1", principal="ann") == "prompts/a"
        assert catalog.seen_request(s, "r1", "CreatePrompt", "h2", principal="bob") == "prompts/b"


def test_checkpoints_keep_the_newest_two(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        job, _ = jobs.create_job(s, prompt_name="p", backbone_name="bb", spec=SPEC, examples=b"")
        for step in (10, 20, 30):
            jobs.store_checkpoint(s, job.id, step, f"ckpt-{step}".encode())
        s.commit()
        job_id = job.id
    with sessions() as s:
        latest = jobs.latest_checkpoint(s, job_id)
        assert latest is not None and latest.step == 30 and latest.data == b"ckpt-30"
        from bank.models import Checkpoint

        assert sorted(c.step for c in s.query(Checkpoint).all()) == [20, 30]
        assert jobs.latest_checkpoint(s, "nope") is None


def test_name_limits_are_the_columns_they_fill() -> None:
    """check_name's widths (promptbank_api, which may not import the bank) follow bank/models.py's columns, so a
    name that passes always fits, on PostgreSQL too."""
    from bank.models import Alias, Backbone, Prompt, Token
    from promptbank_api.names import NAME_CHARS

    widths = {"alias": Alias.__table__.c.name.type.length, "backbone": Backbone.__table__.c.name.type.length,
              "token": Token.__table__.c.name.type.length, "prompt": Prompt.__table__.c.name.type.length}
    assert {k: NAME_CHARS.get(k, 128) for k in widths} == widths
