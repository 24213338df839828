"""The audit log: one row per successful write RPC (who, which RPC, on what, when), read back newest first with
filters, and kept within a retention of days and rows.

Pages go backwards by id (keyset paging), so events recorded while a reader pages through never shift a page.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bank import reads, retention
from bank.models import AuditEvent, utcnow
from promptbank_domain.tokens import AuditRecord

RESOURCE_CHARS = 256  # the column's width: a longer resource is cut to it when recorded


def record_write(s: Session, principal: str, rpc: str, resource: str, *, detail: str = "") -> None:
    """One successful write RPC (`detail`: what it decided on, e.g. a promotion's evidence)."""
    s.add(AuditEvent(at=utcnow(), principal=principal, rpc=rpc, resource=resource[:RESOURCE_CHARS], detail=detail))
    s.flush()


def list_events(s: Session, limit: int, *, below: int = 0, principal: str = "", rpc: str = "",
                resource: str = "", after: datetime | None = None, before: datetime | None = None
                ) -> list[AuditRecord]:
    """Up to `limit` events, newest first, with ids below `below` (0: from the newest). `resource` matches that
    name and the names inside it (`prompts/p` also finds `prompts/p/versions/2`); times are naive UTC, `after`
    inclusive and `before` exclusive."""
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if below:
        q = q.where(AuditEvent.id < below)
    if principal:
        q = q.where(AuditEvent.principal == principal)
    if rpc:
        q = q.where(AuditEvent.rpc == rpc)
    if resource:
        inside = AuditEvent.resource.startswith(resource.rstrip("/") + "/", autoescape=True)
        q = q.where(or_(AuditEvent.resource == resource, inside))
    if after is not None:
        q = q.where(AuditEvent.at >= after)
    if before is not None:
        q = q.where(AuditEvent.at < before)
    return [reads.audit_event(e) for e in s.scalars(q).all()]


def prune(s: Session, *, keep_days: float, keep_rows: int) -> int:
    """Delete events older than `keep_days` and all but about the newest `keep_rows` (0: no bound). Returns how
    many rows went."""
    return retention.prune(s, AuditEvent, keep_days=keep_days, keep_rows=keep_rows)
