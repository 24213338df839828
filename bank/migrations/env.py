"""Alembic environment of the bank schema.

Run programmatically: `bank.db.make_engine(url)` upgrades to head on the connection it passes in
`config.attributes["connection"]` (inside its own transaction and lock). For a new revision, after changing
bank/models.py:

    python -c "from alembic import command; from bank.db import alembic_config; \
command.revision(alembic_config('sqlite:///rev.db'), autogenerate=True, message='what changed')"

(`rev.db` at the current head; review the generated file: autogenerate misses renames and server defaults.)
`command.upgrade(alembic_config(url), 'head', sql=True)` prints the SQL for a DBA instead of running it.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from bank.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kw: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,  # SQLite alters tables by copy-and-move; harmless elsewhere
        **kw,
    )


def run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():  # a no-op when the caller already holds a transaction
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(str(config.get_main_option("sqlalchemy.url")), poolclass=pool.NullPool)
    with engine.connect() as conn:
        run_on(conn)
    engine.dispose()


main()
