"""Access tokens in SQL (a random secret shown once, stored only as its hash, revocable). What their callers
write is in the audit log (bank/audit.py).

A token's name is the identity of its callers: what they make (jobs, uploads, versions, alias moves, audit rows)
is recorded under it, and a trainer reaches what carries its name. So a name is unique across every kind of
principal: no token may take one of RESERVED_NAMES (the server's own principals), and a name is never reused,
even after a revoke (revoked tokens keep their row)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bank import reads
from bank.models import Token, utcnow
from promptbank_api.errors import AlreadyExists, InvalidArgument, NotFound
from promptbank_api.names import check_name
from promptbank_domain.tokens import TokenRecord

ROLES = ("reader", "trainer", "admin")  # each may do what the ones before it may
SECRET_PREFIX = "pbt_"  # recognisable in a leaked-secret scan
ADMIN_NAME = "admin"  # the principal of the --admin-token-file secret
LOCAL_NAME = "local"  # every caller when auth is off
# the server's own principals, and two more kept for principals it may gain (its own background work, open calls)
RESERVED_NAMES = frozenset({ADMIN_NAME, LOCAL_NAME, "system", "anonymous"})


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_token_name(name: str) -> str:
    """A name a new token may take: a resource name that fits the column (check_name) and is none of
    RESERVED_NAMES."""
    check_name("token", name)
    if name in RESERVED_NAMES:
        raise InvalidArgument(f"token name {name!r} is reserved for the server's own principals "
                              f"({', '.join(sorted(RESERVED_NAMES))}); choose another name")
    return name


def create_token(s: Session, name: str, role: str, creator: str, ttl_s: float | None) -> tuple[TokenRecord, str]:
    """A new token and its secret (the only time the secret exists outside the caller's hands); it expires
    `ttl_s` seconds from now (None: never)."""
    check_token_name(name)
    if role not in ROLES:
        raise InvalidArgument(f"role {role!r} is not one of {list(ROLES)}")
    if s.scalar(select(Token.id).where(Token.name == name)) is not None:
        raise AlreadyExists(f"token {name!r} already exists (a name is never reused, even after a revoke: it owns "
                            "what its callers made); choose another name")
    secret = new_secret()
    now = utcnow()
    expires_at = now + timedelta(seconds=ttl_s) if ttl_s is not None else None
    token = Token(name=name, role=role, secret_sha256=secret_hash(secret), creator=creator, created_at=now,
                  expires_at=expires_at)
    s.add(token)
    s.flush()
    return reads.token(token), secret


def live_token(s: Session, digest: str) -> TokenRecord | None:
    """The token whose secret has this `secret_hash`, if it is neither revoked nor expired."""
    t = s.scalar(select(Token).where(Token.secret_sha256 == digest))
    if t is None or t.revoked_at is not None or (t.expires_at is not None and t.expires_at <= utcnow()):
        return None
    return reads.token(t)


def list_tokens(s: Session, offset: int, limit: int) -> list[TokenRecord]:
    return [reads.token(t) for t in s.scalars(select(Token).order_by(Token.name).offset(offset).limit(limit)).all()]


def revoke_token(s: Session, name: str) -> TokenRecord:
    token = s.scalar(select(Token).where(Token.name == name))
    if token is None:
        raise NotFound(f"token {name!r} not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        s.flush()
    return reads.token(token)
