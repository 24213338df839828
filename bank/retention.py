"""Retention of append-only logs (audit events, served rows): rows older than a number of days go, and all but
about the newest N. The row bound counts ids, so it costs one index lookup: ids a rolled-back insert skipped make
it keep a few fewer rows, never more."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, func, select
from sqlalchemy.orm import Session

from bank.models import AuditEvent, ServedRow, utcnow

Logged = type[AuditEvent] | type[ServedRow]  # the log tables: an increasing integer id and each row's time


def prune(s: Session, model: Logged, *, keep_days: float, keep_rows: int) -> int:
    """Delete `model`'s rows older than `keep_days` (0: no age bound) and all but about the newest `keep_rows`
    (0: no bound). Returns how many rows went."""
    gone = 0
    if keep_days > 0:
        gone += _deleted(s, delete(model).where(model.at < utcnow() - timedelta(days=keep_days)))
    if keep_rows > 0:
        newest = s.scalar(select(func.max(model.id)))
        if newest is not None and newest > keep_rows:
            gone += _deleted(s, delete(model).where(model.id <= newest - keep_rows))
    return gone


def _deleted(s: Session, statement: Delete) -> int:
    """Run a bulk DELETE; the rows it removed (its result is a CursorResult: Session.execute is typed for
    SELECTs' rows)."""
    result = cast(CursorResult[Any], s.execute(statement.execution_options(synchronize_session=False)))
    return max(result.rowcount, 0)
