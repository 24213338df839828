"""Tokens: create (the secret is returned once), list and revoke access tokens, and read the audit log of what
their callers wrote. Admin only (auth.RULES)."""

from __future__ import annotations

from datetime import UTC

import grpc

from bank import audit, tokens
from bank.writer import BankDB, Tx
from coordinator import auth
from coordinator import convert as cv
from promptbank_api.errors import InvalidArgument
from promptbank_api.names import from_timestamp, strip_collection, to_timestamp
from promptbank_api.v1 import auth_pb2 as ap
from promptbank_api.v1 import auth_pb2_grpc as ap_grpc
from promptbank_domain.tokens import AuditRecord, TokenRecord

MAX_TTL_S = 10 * 365 * 24 * 3600  # ten years; leave ttl unset for a token that never expires


def token_to_proto(t: TokenRecord) -> ap.Token:
    return ap.Token(name=f"tokens/{t.name}", role=ap.Role.Value(f"ROLE_{t.role.upper()}"), creator=t.creator,
                    create_time=to_timestamp(t.created_at), expire_time=to_timestamp(t.expires_at),
                    revoke_time=to_timestamp(t.revoked_at))


def audit_to_proto(e: AuditRecord) -> ap.AuditEvent:
    return ap.AuditEvent(name=f"auditEvents/{e.id}", time=to_timestamp(e.at), principal=e.principal, method=e.rpc,
                         resource=e.resource, detail=e.detail)


class TokensService(ap_grpc.TokensServicer):
    def __init__(self, db: BankDB, verifier: auth.Verifier | None, page_bytes: int = cv.PAGE_BYTES):
        self.db, self.verifier, self.page_bytes = db, verifier, page_bytes

    async def CreateToken(self, request: ap.CreateTokenRequest, context: grpc.aio.ServicerContext
                          ) -> ap.CreateTokenResponse:
        name = tokens.check_token_name(request.token_id)
        if request.role == ap.ROLE_UNSPECIFIED:
            raise InvalidArgument("role is required: ROLE_READER, ROLE_TRAINER or ROLE_ADMIN")
        role = cv.enum_name(ap.Role, request.role, "role").removeprefix("ROLE_").lower()
        ttl = None
        if request.HasField("ttl_seconds"):
            if not 1 <= request.ttl_seconds <= MAX_TTL_S:
                raise InvalidArgument(f"ttl_seconds={request.ttl_seconds} must be in 1..{MAX_TTL_S} "
                                      "(leave it unset for a token that never expires)")
            ttl = request.ttl_seconds
        creator = auth.current().name

        def q(s: Tx) -> ap.CreateTokenResponse:
            token, secret = tokens.create_token(s, name, role, creator, ttl)
            return ap.CreateTokenResponse(token=token_to_proto(token), secret=secret)

        return await self.db.run(q)

    async def ListTokens(self, request: ap.ListTokensRequest, context: grpc.aio.ServicerContext
                         ) -> ap.ListTokensResponse:
        offset, limit = cv.page(request.page_size, request.page_token, {})

        def q(s: Tx) -> ap.ListTokensResponse:
            rows = tokens.list_tokens(s, offset, limit)
            return ap.ListTokensResponse(tokens=[token_to_proto(t) for t in rows],
                                         next_page_token=cv.next_token(offset, limit, len(rows), {}))

        return await self.db.read(q)

    async def RevokeToken(self, request: ap.RevokeTokenRequest, context: grpc.aio.ServicerContext) -> ap.Token:
        name = strip_collection(request.name, "tokens")
        out = await self.db.run(lambda s: token_to_proto(tokens.revoke_token(s, name)))
        if self.verifier is not None:
            self.verifier.forget()
        return out


    async def ListAuditEvents(self, request: ap.ListAuditEventsRequest, context: grpc.aio.ServicerContext
                              ) -> ap.ListAuditEventsResponse:
        """Newest first; a page token holds the id to continue below (keyset paging), bound to the filters."""
        method = request.method.rsplit("/", 1)[-1]  # "/promptbank.v1.PromptCatalog/DeletePrompt" -> "DeletePrompt"
        for field, value, most in (("principal", request.principal, 64), ("method", method, 64),
                                   ("resource", request.resource, audit.RESOURCE_CHARS)):
            if len(value) > most:
                raise InvalidArgument(f"{field} has {len(value)} characters; the audit log keeps at most {most}")
            if "\x00" in value:  # no name holds one (and PostgreSQL's text cannot)
                raise InvalidArgument(f"{field} holds a NUL character")
        after, before = from_timestamp(request.after), from_timestamp(request.before)
        if after is not None and before is not None and after >= before:
            raise InvalidArgument(f"after ({after.isoformat()}Z) must be earlier than before ({before.isoformat()}Z)")
        query = {"principal": request.principal, "method": method, "resource": request.resource,
                 "after": str(after or ""), "before": str(before or "")}
        below, limit = cv.page(request.page_size, request.page_token, query)

        def q(s: Tx) -> ap.ListAuditEventsResponse:
            rows = audit.list_events(s, limit, below=below, principal=request.principal, rpc=method,
                                     resource=request.resource, after=after, before=before)
            out: list[ap.AuditEvent] = []
            size = 0
            for row in rows:  # the page also stops at its byte budget, as the other lists' pages do
                msg = audit_to_proto(row)
                size += msg.ByteSize() + 16
                if out and size > self.page_bytes:
                    break
                out.append(msg)
            more = len(out) < len(rows) or len(rows) >= limit
            token = cv.position_token(rows[len(out) - 1].id, query) if more and out else ""
            return ap.ListAuditEventsResponse(events=out, next_page_token=token)

        return await self.db.read(q)


async def lookup(db: BankDB, digest: str) -> auth.Grant | None:
    """The principal a secret (by its `secret_hash`) stands for and until when, if its token is live."""

    def q(s: Tx) -> auth.Grant | None:
        t = tokens.live_token(s, digest)
        if t is None:
            return None
        expires = t.expires_at.replace(tzinfo=UTC).timestamp() if t.expires_at is not None else None
        return auth.Grant(auth.Principal(t.name, t.role), expires)

    return await db.read(q)
