"""Alembic migrations on SQLite and PostgreSQL: head equals the models, down and up again, adopting old files."""

from __future__ import annotations

import threading

import pytest
import torch
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, select, text

from bank import store
from bank.codec import encode_prompt
from bank.db import BASELINE, alembic_config, current_revision, make_engine, make_sessionmaker, normalize_url
from bank.jobs import create_job
from bank.models import Base, Job

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
        bb = store.upsert_backbone(s, "bb", model="m", revision="", architecture="encoder", hidden_size=4,
                                   fingerprint="f" * 64)
        p = store.create_prompt(s, "sent", {"labels": ["neg", "pos"]}, tags=["demo"])
        store.add_version(s, p, bb, encode_prompt(torch.randn(2, 4)), aliases=["prod"])
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
            assert store.resolve(s, "sent@prod").version == 1
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
    try:
        assert errors == [] and len(engines) == 3
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


def test_prompts_and_jobs_stored_before_pooling_keep_text_pooling(bank_url: str) -> None:
    """0006: tasks stored without `pooling` were trained on pooled text tokens; they must keep scoring so."""
    raw = create_engine(normalize_url(bank_url))
    _migrate(raw, command.upgrade, "0005")
    with make_sessionmaker(raw)() as s:
        store.create_prompt(s, "old", {"labels": ["neg", "pos"]})
        create_job(s, prompt_name="old", backbone_name="bb", spec={"task": {"labels": ["neg", "pos"]}, "config": {}},
                   examples=b"", request_id=None, request_hash="")
        create_job(s, prompt_name="old", backbone_name="bb", spec={"config": {}}, examples=b"", request_id=None,
                   request_hash="")
        s.commit()
    raw.dispose()
    engine = make_engine(bank_url)  # upgrades to head
    try:
        with make_sessionmaker(engine)() as s:
            assert store.get_prompt(s, "old").task == {"labels": ["neg", "pos"], "pooling": "text"}
            specs = sorted((j.spec for j in s.scalars(select(Job))), key=len)
            assert specs == [{"config": {}}, {"task": {"labels": ["neg", "pos"], "pooling": "text"}, "config": {}}]
            store.create_prompt(s, "new", {"labels": ["a", "b"], "pooling": "prompt"})
            s.commit()
        _migrate(engine, command.downgrade, "0005")  # keeps the key (older code ignores it) ...
        _migrate(engine, command.upgrade, "head")  # ... so a new prompt keeps its pooling through down and up
        with make_sessionmaker(engine)() as s:
            assert store.get_prompt(s, "new").task == {"labels": ["a", "b"], "pooling": "prompt"}
    finally:
        engine.dispose()
