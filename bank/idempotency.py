"""Request ids (AIP-155): a create retried with the same request_id returns what the first call created."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bank.models import IdempotencyKey, utcnow
from promptbank_api.errors import AlreadyExists


def seen_request(s: Session, request_id: str, method: str, request_hash: str, *, principal: str) -> str | None:
    """The resource a previous call by `principal` with this request_id created, or None (another principal's
    use of the same id is none of this one's business). Another payload is ALREADY_EXISTS."""
    if not request_id:
        return None
    key = s.get(IdempotencyKey, (principal, request_id))
    if key is None:
        return None
    if key.method != method or key.request_hash != request_hash:
        raise AlreadyExists(f"request_id {request_id!r} was already used for a different {key.method} request")
    return key.resource


def remember_request(s: Session, request_id: str, method: str, request_hash: str, resource: str, *,
                     principal: str) -> None:
    """Record the result in the same transaction as the create it belongs to, as `principal`'s key."""
    if request_id:
        s.add(IdempotencyKey(principal=principal, request_id=request_id, method=method, request_hash=request_hash,
                             resource=resource, created_at=utcnow()))
        s.flush()
