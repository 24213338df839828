"""Database fixtures: one real PostgreSQL server per test session, a fresh database per test.

Registered in tests/conftest.py (`pytest_plugins`). The server starts only when a test asks for it; missing
server binaries fail the test loudly with what to install (tests/pg_server.py), they never skip it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg_server import PgServer, PostgresMissing, start_server

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server: PgServer | None = start_server()
    except PostgresMissing as exc:  # fail outside the except block: one clear message, no chained traceback
        server, missing = None, str(exc)
    if server is None:
        pytest.fail(missing, pytrace=False)
    yield server
    server.stop()


@pytest.fixture()
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A `postgresql://` URL of a new, empty database, dropped after the test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url.rsplit("/", 1)[1])


def fresh_db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """An empty database of `backend`: a SQLite file path in tmp_path, or a new PostgreSQL database."""
    if backend == "sqlite":
        return str(tmp_path / "bank.db")
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")


@pytest.fixture(params=BACKENDS)
def bank_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once per backend, each time on a fresh, empty database (schema not yet created)."""
    return fresh_db_url(request, request.param, tmp_path)
