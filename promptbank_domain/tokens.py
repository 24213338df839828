"""Read models of access tokens, the audit log and uploaded datasets, as the bank returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class TokenRecord:
    """An access token (never its secret, nor the secret's hash)."""

    name: str
    role: str  # reader | trainer | admin
    creator: str
    created_at: datetime | None = None
    expires_at: datetime | None = None  # naive UTC
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One successful write RPC."""

    at: datetime | None
    principal: str
    rpc: str  # the method's name, e.g. "DeletePrompt"
    resource: str
    id: int = 0  # grows with time: the audit log pages by it
    detail: str = ""  # more where the call decided something: a promotion's evidence


@dataclass(frozen=True)
class DatasetRecord:
    """An uploaded labelled dataset, named `datasets/{id}` by jobs."""

    id: str
    rows: int
    label_counts: dict[str, int] = field(default_factory=dict)
    principal: str = ""  # who uploaded it
    size: int = 0  # bytes stored
