"""Who may call what: one table (RPC -> least role) and one interceptor that decides every call from it.

Callers send `authorization: Bearer <secret>`. Roles nest: reader < trainer < admin. The health service
is open to all; reflection to any authenticated caller. With auth off (the loopback-only embedded default)
every caller is the local admin. A secret never appears in a message or a log line.

`Principal.name` is the caller's identity, the key its jobs, uploads, versions and alias moves are recorded
under: `admin` for the --admin-token-file secret, `local` when auth is off, else its token's name. Token names
exclude those (bank/tokens.py RESERVED_NAMES) and are never reused, so a name is one principal for good and needs
no separate id. A token in an older bank that holds a reserved name is refused here (`Verifier`).
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from bank.tokens import ADMIN_NAME, LOCAL_NAME, RESERVED_NAMES, secret_hash
from coordinator import logs
from coordinator.handlers import HandlerInterceptor, Stream, Unary, rewrap
from promptbank_api.errors import PermissionDenied

log = logging.getLogger("promptbank.coordinator")

ROLES = ("reader", "trainer", "admin")
RULES: dict[str, dict[str, str]] = {  # service -> RPC -> the least role that may call it
    "promptbank.v1.Inference": {"Classify": "reader", "Generate": "reader"},
    "promptbank.v1.PromptCatalog": {
        "ListBackbones": "reader", "GetBackbone": "reader", "RegisterBackbone": "admin", "DeregisterBackbone": "admin",
        "CreatePrompt": "admin", "GetPrompt": "reader", "ListPrompts": "reader", "UpdatePrompt": "admin",
        "DeletePrompt": "admin", "GetPromptVersion": "reader", "ListPromptVersions": "reader",
        "UpdatePromptVersion": "admin", "DeletePromptVersion": "admin", "SetAlias": "admin",
        "DeleteAlias": "admin", "ListAliasHistory": "reader", "ImportPromptVersion": "admin",
        "ExportPromptVersion": "reader",
    },
    # a trainer reaches only its own jobs: the service checks the job's principal
    "promptbank.v1.TrainJobs": {
        "CreateTrainJob": "trainer", "GetTrainJob": "trainer", "ListTrainJobs": "trainer",
        "CancelTrainJob": "trainer", "WatchTrainJob": "trainer", "UploadDataset": "trainer",
    },
    # an outcome needs a result id, 128 random bits given only to the caller that classified the row
    "promptbank.v1.LiveEvaluation": {
        "RecordOutcomes": "reader", "GetRollout": "reader", "CompareVersions": "reader", "UpdateRollout": "admin",
        "PromoteAlias": "admin",
    },
    "promptbank.v1.Tokens": {"CreateToken": "admin", "ListTokens": "admin", "RevokeToken": "admin",
                             "ListAuditEvents": "admin"},
    "grpc.health.v1.Health": {"Check": "", "Watch": "", "List": ""},  # open: probes carry no token
    "grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo": "reader"},
    "grpc.reflection.v1.ServerReflection": {"ServerReflectionInfo": "reader"},
}
WRITES = frozenset({  # RPCs that change something: each success is written to the audit log with its principal
    "CreatePrompt", "UpdatePrompt", "DeletePrompt", "UpdatePromptVersion", "DeletePromptVersion", "SetAlias",
    "DeleteAlias", "ImportPromptVersion", "RegisterBackbone", "DeregisterBackbone", "CreateTrainJob",
    "CancelTrainJob", "UploadDataset", "CreateToken", "RevokeToken", "RecordOutcomes", "UpdateRollout",
})  # PromoteAlias is audited by the bank, in the move's own transaction, with its evidence
# Generate with a backbone alone (no prompt) is a use of the model itself, beyond the prompts an admin published:
# the role of those who may already run it on any data (train jobs).
BARE_BACKBONE_ROLE = "trainer"
CACHE_S = 5.0  # a verified secret is trusted this long, never past its expiry (a revoke here applies at once)
CACHE_ITEMS = 10_000  # secrets remembered at most


@dataclass(frozen=True)
class Principal:
    """The caller: its name (the unique key of what it owns; see the module docstring) and role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Grant:
    """What a live token's secret stands for: its principal, until `expires` (Unix time; None: never)."""

    principal: Principal
    expires: float | None = None


Audit = Callable[[Principal, str, str], Awaitable[None]]  # (principal, rpc, resource) of a successful write
LOCAL = Principal(LOCAL_NAME, "admin")  # every caller when auth is off (loopback only)
ADMIN = Principal(ADMIN_NAME, "admin")  # the --admin-token-file secret
_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal", default=LOCAL)


def current() -> Principal:
    """The principal of the RPC being served (read it in the service, before handing work to a thread)."""
    return _current.get()


def require(role: str, what: str) -> None:
    """PERMISSION_DENIED unless the current caller has `role`: for a use of an RPC that needs more than its rule."""
    principal = current()
    if not principal.may(role):
        raise PermissionDenied(f"{what} needs the {role} role; token {principal.name!r} has the {principal.role} role")


def rule(method: str) -> str | None:
    """The least role for `/package.Service/Method`; None when the table has no rule (refused)."""
    service, _, rpc = method.lstrip("/").partition("/")
    return RULES.get(service, {}).get(rpc)


def bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return ""


def _admissible(grant: Grant | None) -> Grant | None:
    """`grant`, unless its token has a reserved name (made before names were checked): such a token would act as
    the admin secret's or auth-off's principal, owning their jobs and uploads."""
    if grant is not None and grant.principal.name in RESERVED_NAMES:
        log.warning("refused a token named %r: the name is reserved for the server's own principals (%s); revoke "
                    "it and give its holder a token with another name", grant.principal.name,
                    ", ".join(sorted(RESERVED_NAMES)))
        return None
    return grant


class Verifier:
    """Secret -> Principal, with the configured admin secret and a short cache in front of the bank. Secrets are
    hashed once, here, with the bank's `secret_hash`; `lookup` and the cache see only the hash. A cached token
    is trusted until CACHE_S has passed or it expires, whichever comes first."""

    def __init__(self, lookup: Callable[[str], Awaitable[Grant | None]], admin_secret: str = ""):
        self._lookup = lookup
        self._admin = secret_hash(admin_secret) if admin_secret else ""
        self._cache: dict[str, tuple[float, Principal | None]] = {}  # hash -> (monotonic deadline, principal)

    async def __call__(self, secret: str) -> Principal | None:
        key = secret_hash(secret)
        if self._admin and hmac.compare_digest(key, self._admin):
            return ADMIN
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        grant = _admissible(await self._lookup(key))
        principal, until = None, now + CACHE_S
        if grant is not None:
            left = CACHE_S if grant.expires is None else grant.expires - time.time()
            if left > 0:
                principal, until = grant.principal, now + min(CACHE_S, left)
        if len(self._cache) >= CACHE_ITEMS:  # bounded, whatever stream of wrong secrets arrives
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= CACHE_ITEMS:
                self._cache.clear()
        self._cache[key] = (until, principal)
        return principal

    def forget(self) -> None:
        """Drop the cache (after a revoke here)."""
        self._cache.clear()


def unread(_: bytes) -> None:
    """The request deserializer of a refused call: its bytes, however many, are never parsed."""
    return None


def refused(handler: grpc.RpcMethodHandler) -> bool:
    """Whether `handler` is a refusal from `_deny`: the call is decided, and its request need not be read."""
    return handler.request_deserializer is unread


def _deny(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler that aborts with `code` before the service, or anyone, reads the request: it takes its requests
    as a stream, so grpc starts it without waiting for a message (a unary call's message is never received),
    and its deserializer ignores whatever bytes arrive. A refused caller's message costs no memory or parsing."""

    async def unary(_: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def stream(_: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler.unary_unary or handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, unread, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(stream, unread, handler.response_serializer)


def resource_of(request: Any, response: Any) -> str:
    """The name of what a write touched: the response's resource, else the request's."""
    for msg in (getattr(response, "token", None), response, request):
        for field in ("name", "parent", "prompt_id", "backbone_id", "token_id"):
            value = getattr(msg, field, "") if msg is not None else ""
            if isinstance(value, str) and value:
                return value
    return ""


def _as(handler: grpc.RpcMethodHandler, principal: Principal, audit: Audit | None = None,
        rpc: str = "") -> grpc.RpcMethodHandler:
    """The handler, run with `principal` as the current one; a successful call is passed to `audit`."""

    def around_unary(inner: Unary) -> Unary:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = _current.set(principal)
            logs.note_principal(principal.name)
            try:
                response = await inner(request, context)
            finally:
                _current.reset(token)
            if audit is not None:
                await audit(principal, rpc, resource_of(request, response))
            return response

        return unary

    def around_stream(inner: Stream) -> Stream:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = _current.set(principal)
            logs.note_principal(principal.name)
            try:
                async for item in inner(request, context):
                    yield item
            finally:
                _current.reset(token)

        return stream

    return rewrap(handler, around_unary, around_stream)


class AuthInterceptor(HandlerInterceptor):
    """Decides every RPC from RULES. `verify` None: auth is off and every caller is LOCAL."""

    def __init__(self, verify: Verifier | None, audit: Audit | None = None):
        self.verify, self.audit = verify, audit

    async def principal(self, metadata: Any) -> Principal | None:
        """Who a call's metadata speaks for (None: no token, or a bad one); faces that list what a caller may use
        ask this, as the table's rule does."""
        if self.verify is None:
            return LOCAL
        secret = bearer(metadata)
        return await self.verify(secret) if secret else None

    async def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        need = rule(method)
        if need == "":
            return handler  # open
        if need is None:
            log.warning("refused %s: no rule in coordinator/auth.py RULES", method)
            return _deny(handler, grpc.StatusCode.PERMISSION_DENIED, f"{method} has no access rule")
        rpc = method.rsplit("/", 1)[-1]
        audit = self.audit if rpc in WRITES else None
        if self.verify is None:
            return _as(handler, LOCAL, audit, rpc)
        secret = bearer(details.invocation_metadata)
        principal = await self.principal(details.invocation_metadata)
        if principal is None:
            why = "no token: send 'authorization: Bearer <token>'" if not secret else \
                "the token is unknown, expired or revoked"
            log.info("%s -> UNAUTHENTICATED (%s)", method, "no token" if not secret else "bad token")
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED, why)
        if not principal.may(need):
            logs.note_principal(principal.name)
            log.info("%s by %s (%s) -> PERMISSION_DENIED", method, principal.name, principal.role)
            return _deny(handler, grpc.StatusCode.PERMISSION_DENIED,
                         f"{rpc} needs the {need} role; token {principal.name!r} has the {principal.role} role")
        return _as(handler, principal, audit, rpc)
