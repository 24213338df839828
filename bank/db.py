"""Engine and session factory: SQLite file (WAL, busy_timeout) by default, any SQLAlchemy URL otherwise.

The schema belongs to Alembic (bank/migrations): `make_engine` brings the database to the head revision.
That is a cheap read when it is already there; otherwise the upgrade runs in one transaction under a lock
(`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL), so processes starting together migrate once.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema that `Base.metadata.create_all` made before migrations existed
_PG_LOCK = 0x70726F6D  # pg_advisory_xact_lock key held while migrating ("prom")


def normalize_url(url: str) -> str:
    """A bare path is a SQLite file (its folder is created); `postgresql://` uses the psycopg 3 driver."""
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def safe_url(url: str) -> str:
    """The bank's URL for logs and messages: a password never shows."""
    if "://" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: show only its scheme
        return url.split("://", 1)[0] + "://..."


BUSY_WAIT_MS = 30_000  # a connection waits this long for a SQLite lock (e.g. while another process migrates)
MIGRATION_WAIT_MS = 120_000  # a starting server waits this long for another one's migration


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if url:
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to head; a database from before migrations (tables, no version) is adopted first."""
    head = _script().get_current_head()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # Off before BEGIN (a no-op inside a transaction): SQLite alters a table by copying and dropping it,
            # and a drop with foreign keys on would cascade into the child tables.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.exec_driver_sql(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")  # other starters wait for the migration
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        try:
            current = current_revision(conn)
            if current != head:
                if current is not None and current not in {r.revision for r in _script().walk_revisions()}:
                    raise RuntimeError(
                        f"database schema is at revision {current!r}, unknown to this promptbank (head {head!r}); "
                        "is it from a newer release?"
                    )
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                if current is None and inspect(conn).has_table("prompts"):
                    command.stamp(cfg, BASELINE)
                command.upgrade(cfg, "head")
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("migration left rows that break foreign keys; rolled back")
            conn.commit()
        finally:
            if sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")


def _enable_wal(dbapi_conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (it stays so), retrying while another connection holds a lock.

    The switch reads the file header, then upgrades to a write lock; SQLite calls no busy handler on a read-to-write
    upgrade (that could deadlock), so `busy_timeout` does not cover it, and servers starting together on a new file
    saw "database is locked" here (CI, test_concurrent_starts_migrate_once). Once the file is WAL this is a read.
    """
    deadline = time.monotonic() + BUSY_WAIT_MS / 1000
    delay = 0.005
    while True:
        try:
            mode = dbapi_conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
            continue
        if str(mode).lower() != "wal" and mode != "memory":
            raise RuntimeError(f"SQLite would not switch to WAL (journal_mode is {mode!r})")
        return


def make_engine(url: str, password: str = "") -> Engine:
    """Create the engine; a bare path is taken as a SQLite file. The schema is migrated to head if behind.
    `password` (from a file or the environment) joins the URL here, so it never has to be on a command line."""
    url = normalize_url(url)
    sqlite_args = {"timeout": BUSY_WAIT_MS / 1000} if url.startswith("sqlite") else {}  # busy wait from connect on
    target = make_url(url).set(password=password) if password and not url.startswith("sqlite") else url
    engine = create_engine(target, pool_pre_ping=True, connect_args=sqlite_args, hide_parameters=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            _enable_wal(dbapi_conn)  # the busy wait is already set: connect_args' timeout is SQLite's busy_timeout
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    try:
        upgrade_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions of the bank; every flush that changes the catalog bumps its generation (bank.generation)."""
    from bank.generation import bump_generation

    maker = sessionmaker(engine, expire_on_commit=False)
    event.listen(maker, "before_flush", bump_generation)
    return maker
