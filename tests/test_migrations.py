"""Alembic migrations on SQLite and PostgreSQL: head equals the models, down and up again, adopting old files."""

from __future__ import annotations

import re
import threading
from datetime import datetime

import pytest
import torch
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Engine, column, create_engine, event, inspect, select, table, text

from bank import catalog
from bank.codec import encode_prompt
from bank.db import BASELINE, alembic_config, current_revision, make_engine, make_sessionmaker, normalize_url
from bank.jobs import create_job
from bank.models import Base, Job, Prompt
from promptbank_domain.jobs import JobSpec
from promptbank_domain.task import TaskSpec

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _diff(engine: Engine) -> list:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return current_revision(conn)


def _migrate(engine: Engine, fn, revision: str) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        fn(cfg, revision)


def _seed(engine: Engine) -> None:
    with make_sessionmaker(engine)() as s:
        bb = catalog.upsert_backbone(s, "bb", model="m", revision="", architecture="encoder", hidden_size=4,
                                   fingerprint="f" * 64)
        p = catalog.create_prompt(s, "sent", TaskSpec(labels=("neg", "pos")), tags=["demo"])
        catalog.add_version(s, p.name, bb.name, encode_prompt(torch.randn(2, 4)), aliases=["prod"])
        s.commit()


def test_head_matches_the_models(bank_url: str) -> None:
    engine = make_engine(bank_url)
    try:
        assert _revision(engine) == HEAD
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_then_upgrade_again(bank_url: str) -> None:
    engine = make_engine(bank_url)
    try:
        _seed(engine)
        _migrate(engine, command.downgrade, "base")
        assert _revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        _migrate(engine, command.upgrade, "head")
        assert _revision(engine) == HEAD and _diff(engine) == []
        _seed(engine)  # the rebuilt schema takes the same data again
    finally:
        engine.dispose()


def test_make_engine_at_head_keeps_data(bank_url: str) -> None:
    make_engine(bank_url).dispose()
    engine = make_engine(bank_url)
    _seed(engine)
    engine.dispose()
    engine = make_engine(bank_url)  # already at head: nothing to do, nothing lost
    try:
        with make_sessionmaker(engine)() as s:
            assert catalog.resolve(s, "sent@prod").version == 1
        assert _revision(engine) == HEAD
    finally:
        engine.dispose()


def test_a_database_from_before_migrations_is_adopted(bank_url: str) -> None:
    """What `create_all` made before Alembic (the baseline tables, no alembic_version) is stamped, then upgraded."""
    raw = create_engine(normalize_url(bank_url))
    _migrate(raw, command.upgrade, BASELINE)
    with raw.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    raw.dispose()
    engine = make_engine(bank_url)
    try:
        assert _revision(engine) == HEAD and _diff(engine) == []
        _seed(engine)
    finally:
        engine.dispose()


def test_concurrent_starts_migrate_once(bank_url: str) -> None:
    errors: list[BaseException] = []
    engines: list[Engine] = []
    creates: list[str] = []  # every CREATE TABLE prompts any engine runs, by any starter

    def watch(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if re.match(r"\s*CREATE TABLE\s+\"?prompts\"?\s*\(", statement, re.IGNORECASE):
            creates.append(statement)

    event.listen(Engine, "before_cursor_execute", watch)

    def start() -> None:
        try:
            engines.append(make_engine(bank_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    event.remove(Engine, "before_cursor_execute", watch)
    try:
        assert errors == [] and len(engines) == 3
        assert len(creates) == 1, f"the schema was created {len(creates)} times by 3 starters"
        assert _revision(engines[0]) == HEAD and _diff(engines[0]) == []
    finally:
        for e in engines:
            e.dispose()


def test_an_unknown_revision_is_refused(bank_url: str) -> None:
    make_engine(bank_url).dispose()
    raw = create_engine(normalize_url(bank_url))
    with raw.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zz99'"))
    raw.dispose()
    with pytest.raises(RuntimeError, match="revision 'zz99', unknown to this promptbank"):
        make_engine(bank_url)


def _insert_old_jobs(engine: Engine, specs: list[dict], request_ids: list[str | None] | None = None) -> list[str]:
    """Jobs as code before 0007 wrote them (with `request_id`/`request_hash` columns), straight in SQL."""
    jobs = table("jobs", column("id"), column("request_id"), column("request_hash"), column("prompt_name"),
                 column("backbone_name"), column("spec", JSON), column("examples"), column("state"),
                 column("step"), column("total_steps"), column("loss"), column("metrics", JSON), column("error"),
                 column("result_version"), column("cancel_requested"), column("attempts"), column("created_at"))
    ids = []
    with engine.begin() as conn:
        for k, spec in enumerate(specs):
            ids.append(f"old{k}")
            conn.execute(jobs.insert().values(
                id=ids[-1], request_id=(request_ids or [None] * len(specs))[k], request_hash=f"h{k}",
                prompt_name="old", backbone_name="bb", spec=spec, examples=b"", state="QUEUED", step=0,
                total_steps=0, loss=0.0, metrics={}, error="", result_version="", cancel_requested=False,
                attempts=0, created_at=datetime(2026, 11, 1)))
    return ids


def test_job_request_ids_move_to_the_idempotency_table(bank_url: str) -> None:
    """0007: a retry of a create sent before the upgrade still returns the job it created."""
    raw = create_engine(normalize_url(bank_url))
    _migrate(raw, command.upgrade, "0006")
    old = {"task": {"labels": ["neg", "pos"]}, "config": {}}
    ids = _insert_old_jobs(raw, [old, old], request_ids=["req-a", None])
    raw.dispose()
    engine = make_engine(bank_url)
    try:
        with make_sessionmaker(engine)() as s:
            assert catalog.seen_request(s, "req-a", "CreateTrainJob", "h0", principal="") == f"jobs/{ids[0]}"
            job, created = create_job(s, prompt_name="old", backbone_name="bb", spec=JobSpec.from_json(old), examples=b"",
                                      request_id="req-a", request_hash="h0")
            assert job.id == ids[0] and not created
            s.commit()
        _migrate(engine, command.downgrade, "0006")  # and back: the column holds the id again
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, request_id, request_hash FROM jobs ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(ids[0], "req-a", "h0"), (ids[1], None, "")]  # a hash without an id meant nothing
            assert conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar() == 0
    finally:
        engine.dispose()


def _insert_old_prompt(engine: Engine, name: str, task: dict) -> None:
    """A prompt as code before 0014 wrote it (no `created_by`), straight in SQL."""
    prompts = table("prompts", column("name"), column("task", JSON), column("tags", JSON), column("owner"),
                    column("latest_version"), column("created_at"), column("updated_at"))
    with engine.begin() as conn:
        conn.execute(prompts.insert().values(name=name, task=task, tags=[], owner="", latest_version=0,
                                             created_at=datetime(2026, 11, 1), updated_at=datetime(2026, 11, 1)))


def test_prompts_and_jobs_stored_before_pooling_keep_text_pooling(bank_url: str) -> None:
    """0006: tasks stored without `pooling` were trained on pooled text tokens; they must keep scoring so."""
    raw = create_engine(normalize_url(bank_url))
    _migrate(raw, command.upgrade, "0005")
    _insert_old_prompt(raw, "old", {"labels": ["neg", "pos"]})
    _insert_old_jobs(raw, [{"task": {"labels": ["neg", "pos"]}, "config": {}}, {"config": {}}])
    raw.dispose()
    engine = make_engine(bank_url)  # upgrades to head
    try:
        with make_sessionmaker(engine)() as s:
            assert s.scalar(select(Prompt.task).where(Prompt.name == "old")) == {"labels": ["neg", "pos"], "pooling": "text"}
            assert catalog.get_prompt(s, "old").task.pooling == "text"
            specs = sorted((j.spec for j in s.scalars(select(Job))), key=len)
            assert specs == [{"config": {}}, {"task": {"labels": ["neg", "pos"], "pooling": "text"}, "config": {}}]
            catalog.create_prompt(s, "new", TaskSpec(labels=("a", "b"), pooling="prompt"))
            s.commit()
        _migrate(engine, command.downgrade, "0005")  # keeps the key (older code ignores it) ...
        _migrate(engine, command.upgrade, "head")  # ... so a new prompt keeps its pooling through down and up
        with make_sessionmaker(engine)() as s:
            assert catalog.get_prompt(s, "new").task == TaskSpec(labels=("a", "b"), pooling="prompt")
    finally:
        engine.dispose()


def test_old_prompts_and_keys_get_their_principals(bank_url: str) -> None:
    """0014: a prompt takes the principal of its first train job (none: admins only), a key its job's principal."""
    raw = create_engine(normalize_url(bank_url))
    _migrate(raw, command.upgrade, "0013")
    _insert_old_prompt(raw, "trained", {"labels": ["neg", "pos"]})
    _insert_old_prompt(raw, "made", {"labels": ["neg", "pos"]})
    jobs = table("jobs", column("id"), column("prompt_name"), column("backbone_name"), column("spec", JSON),
                 column("examples"), column("state"), column("created_at"), column("principal"), column("step"),
                 column("total_steps"), column("loss"), column("metrics", JSON), column("error"),
                 column("result_version"), column("cancel_requested"), column("attempts"))
    keys = table("idempotency_keys", column("request_id"), column("method"), column("request_hash"),
                 column("resource"), column("created_at"))
    with raw.begin() as conn:
        for n, who in enumerate(("ann", "bob")):
            conn.execute(jobs.insert().values(id=f"j{n}", prompt_name="trained", backbone_name="bb", spec={},
                                              examples=b"", state="SUCCEEDED", created_at=datetime(2026, 11, 2 + n),
                                              principal=who, step=0, total_steps=0, loss=0.0, metrics={}, error="",
                                              result_version="", cancel_requested=False, attempts=1))
        conn.execute(keys.insert().values(request_id="rq", method="CreateTrainJob", request_hash="h",
                                          resource="jobs/j1", created_at=datetime(2026, 11, 3)))
    raw.dispose()
    engine = make_engine(bank_url)
    try:
        with make_sessionmaker(engine)() as s:
            assert catalog.get_prompt(s, "trained").created_by == "ann"
            assert catalog.get_prompt(s, "made").created_by == ""
            assert catalog.seen_request(s, "rq", "CreateTrainJob", "h", principal="bob") == "jobs/j1"
            assert catalog.seen_request(s, "rq", "CreateTrainJob", "h", principal="ann") is None
            catalog.remember_request(s, "rq", "CreatePrompt", "h2", "prompts/made", principal="ann")
            s.commit()
        _migrate(engine, command.downgrade, "0013")  # one key per id again: the first one's
        with engine.connect() as conn:
            assert conn.execute(text("SELECT resource FROM idempotency_keys")).scalars().all() == ["jobs/j1"]
        _migrate(engine, command.upgrade, "head")
        assert _diff(engine) == []
    finally:
        engine.dispose()
