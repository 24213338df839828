"""Counters that several coordinators add to at once: each change is one `INSERT ... ON CONFLICT DO UPDATE SET n
= n + excluded.n` (SQLite and PostgreSQL both have it), never a read-modify-write in Python, so two writers'
increments add up. Rows go in key order, so two writers lock them in the same order and never deadlock."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bank.models import Base

CHUNK = 900  # values per IN list / rows per statement: well inside SQLite's and PostgreSQL's parameter limits
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def add(s: Session, model: type[Base], keys: tuple[str, ...], increments: Mapping[tuple[int, ...], Mapping[str, int]]
        ) -> None:
    """Add `increments[key][column]` to each row of `model` keyed by the `keys` columns (a missing row starts at
    0), in one batched statement."""
    if not increments:
        return
    name = s.get_bind().dialect.name
    table: Any = model.__table__
    if name == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif name == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise NotImplementedError(f"counters need SQLite or PostgreSQL, not {name!r}")
    columns = sorted({c for row in increments.values() for c in row})
    stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                      set_={c: table.c[c] + stmt.excluded[c] for c in columns})
    params = [{**dict(zip(keys, key, strict=True)), **{c: int(row.get(c, 0)) for c in columns}}
              for key, row in sorted(increments.items())]
    s.execute(stmt, params)
