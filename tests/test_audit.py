"""The audit log's reads and retention: the bank's filters, keyset pages and pruning on SQLite and PostgreSQL, and a
live server that keeps only what its flags allow, at start and on every write.

Who may read it, and the RPC's filters and pages through the SDK and the CLI, are in tests/test_auth.py (a server with
tokens and several principals)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from bank import audit
from bank.db import make_engine, make_sessionmaker
from bank.models import AuditEvent, utcnow
from coordinator.__main__ import parse
from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from tests.conftest import LiveServer


@pytest.fixture()
def engine(bank_url: str) -> Iterator[Engine]:
    engine = make_engine(bank_url)
    yield engine
    engine.dispose()


def _write(engine: Engine, *events: tuple[str, str, str]) -> None:
    with make_sessionmaker(engine)() as s:
        for principal, rpc, resource in events:
            audit.record_write(s, principal, rpc, resource)
        s.commit()


def _read(engine: Engine, limit: int = 100, **filters: object) -> list[tuple[str, str, str]]:
    with make_sessionmaker(engine)() as s:
        return [(e.principal, e.rpc, e.resource) for e in audit.list_events(s, limit, **filters)]  # type: ignore[arg-type]


def test_filters_match_names_and_what_is_inside_them(engine: Engine) -> None:
    _write(engine, ("a", "CreatePrompt", "prompts/p"), ("b", "SetAlias", "prompts/p/aliases/prod"),
           ("a", "CreatePrompt", "prompts/p2"), ("a", "CreatePrompt", "prompts/p_x"), ("b", "RevokeToken", "tokens/t"))
    assert [r[2] for r in _read(engine)] == ["tokens/t", "prompts/p_x", "prompts/p2", "prompts/p/aliases/prod",
                                             "prompts/p"]  # newest first
    assert _read(engine, resource="prompts/p") == [("b", "SetAlias", "prompts/p/aliases/prod"),
                                                   ("a", "CreatePrompt", "prompts/p")]  # not p2, not p_x
    assert _read(engine, resource="prompts/p%") == []  # LIKE's wildcards are plain characters
    assert _read(engine, principal="b", rpc="RevokeToken") == [("b", "RevokeToken", "tokens/t")]
    assert len(_read(engine, resource="prompts")) == 4


def test_pages_go_back_by_id_and_times_bound_them(engine: Engine) -> None:
    _write(engine, *[("a", "CreatePrompt", f"prompts/p{i}") for i in range(5)])
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        first = audit.list_events(s, 2)
    _write(engine, ("a", "CreatePrompt", "prompts/late"))  # a new event does not shift the next page
    with sessions() as s:
        second = audit.list_events(s, 2, below=first[-1].id)
        rest = audit.list_events(s, 10, below=second[-1].id)
    assert [e.resource for e in first + second + rest] == [f"prompts/p{i}" for i in (4, 3, 2, 1, 0)]
    with sessions() as s:
        s.execute(update(AuditEvent).where(AuditEvent.resource == "prompts/p0")
                  .values(at=utcnow() - timedelta(days=3)))
        s.commit()
        now = utcnow()
        old = audit.list_events(s, 10, before=now - timedelta(days=1))
        recent = audit.list_events(s, 10, after=now - timedelta(days=1))
    assert [e.resource for e in old] == ["prompts/p0"] and len(recent) == 5


def test_prune_keeps_the_newest_rows_and_days(engine: Engine) -> None:
    _write(engine, *[("a", "CreatePrompt", f"prompts/p{i}") for i in range(10)])
    with make_sessionmaker(engine)() as s:
        assert audit.prune(s, keep_days=0, keep_rows=0) == 0  # no bound: nothing goes
        assert audit.prune(s, keep_days=0, keep_rows=4) == 6
        s.execute(update(AuditEvent).where(AuditEvent.resource == "prompts/p6").values(at=utcnow() - timedelta(days=8)))
        assert audit.prune(s, keep_days=7, keep_rows=4) == 1
        s.commit()
    assert [r[2] for r in _read(engine)] == ["prompts/p9", "prompts/p8", "prompts/p7"]


def test_the_retention_flags_reach_the_config() -> None:
    cfg = parse(["--backbone", "x=/nonexistent", "--audit-retention-days", "30", "--audit-max-rows", "500"])
    assert (cfg.audit_retention_days, cfg.audit_max_rows) == (30, 500)
    assert (ServerConfig().audit_retention_days, ServerConfig().audit_max_rows) == (365, 1_000_000)
    with pytest.raises(ValueError, match="--audit-retention-days -1 must be in"):
        ServerConfig(audit_retention_days=-1)
    with pytest.raises(ValueError, match="--audit-max-rows -2 must be >= 0"):
        ServerConfig(audit_max_rows=-2)


def test_a_server_keeps_its_audit_log_within_the_flags(ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    db = str(tmp_path / "bank.db")
    engine = make_engine(db)
    try:
        _write(engine, ("local", "CreatePrompt", "prompts/ancient"))
        with Session(engine) as s:
            s.execute(update(AuditEvent).values(at=utcnow() - timedelta(days=40)))
            s.commit()
    finally:
        engine.dispose()
    live = LiveServer(ServerConfig(port=0, db=db, worker_cpus=0.05, grace_seconds=0.5, audit_retention_days=30,
                                   audit_max_rows=3, backbones=(BackboneSpec("enc", tiny_encoder),)))
    try:
        with Client(live.address, timeout=60) as c:
            assert c.list_audit_events() == []  # the 40-day-old event went at start
            for i in range(5):
                c.create_prompt(f"kept-{i}", ["a", "b"])
            events = c.list_audit_events()
    finally:
        live.stop()
    assert [(e.principal, e.method, e.resource) for e in events] == [
        ("local", "CreatePrompt", f"prompts/kept-{i}") for i in (4, 3, 2)]
