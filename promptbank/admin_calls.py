"""The admin calls of the Python SDK's `Client`: backbones' lifecycle, access tokens and the audit log.

A mixin: `Client` (promptbank/client.py) gives it its stubs and deadline; paging through a List lives here too,
and the Client's own lists use it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from promptbank.checks import integer
from promptbank_api.names import strip_collection, to_timestamp
from promptbank_api.v1 import auth_pb2 as ap
from promptbank_api.v1 import auth_pb2_grpc as ap_grpc
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import catalog_pb2_grpc as cat_grpc

REGISTER_TIMEOUT_S = 600.0  # loading a model on new replicas may take minutes


class AdminCalls:
    """Calls that need the admin role (the server refuses others with PERMISSION_DENIED)."""

    catalog: cat_grpc.PromptCatalogStub
    tokens: ap_grpc.TokensStub
    timeout: float

    def _all_pages(self, rpc: Any, request: Any, field: str, most: int | None = None) -> list[Any]:
        """Follow next_page_token until the last page, or until `most` items; every page call carries the
        deadline."""
        out: list[Any] = []
        while True:
            resp = rpc(request, timeout=self.timeout)
            out.extend(getattr(resp, field))
            if not resp.next_page_token or (most is not None and len(out) >= most):
                return out if most is None else out[:most]
            request.page_token = resp.next_page_token

    # ------------------------------------------------------------ backbones

    def register_backbone(self, name: str, model: str, revision: str = "", replicas: int | None = None,
                          timeout: float = REGISTER_TIMEOUT_S, dtype: str = "") -> cat.Backbone:
        """Load a model on new replicas and serve it; `replicas` None takes the server's default (1); `dtype`
        auto (the default), bf16, fp16 or fp32."""
        req = cat.RegisterBackboneRequest(backbone_id=name, model=model, revision=revision, dtype=dtype)
        if replicas is not None:
            req.replicas = replicas
        return self.catalog.RegisterBackbone(req, timeout=timeout)

    def deregister_backbone(self, name: str, force: bool = False) -> cat.DeregisterBackboneResponse:
        """Stop the answering coordinator's replicas of a backbone. Refused (`FailedPrecondition`, naming them)
        while train jobs on it are queued or running, unless `force`, which ends them FAILED. A backbone that
        stored versions pin stays in the catalog (`removed` False) with no serving replicas."""
        req = cat.DeregisterBackboneRequest(name=f"backbones/{strip_collection(name, 'backbones')}", force=force)
        return self.catalog.DeregisterBackbone(req, timeout=self.timeout)

    # ------------------------------------------------------------ tokens

    def create_token(self, name: str, role: str, ttl_seconds: int | None = None) -> ap.CreateTokenResponse:
        """A new token; its `secret` is in the response only, once. `role`: reader, trainer or admin."""
        req = ap.CreateTokenRequest(token_id=name, role=ap.Role.Value(f"ROLE_{role.upper()}"))
        if ttl_seconds is not None:
            req.ttl_seconds = ttl_seconds
        return self.tokens.CreateToken(req, timeout=self.timeout)

    def list_tokens(self) -> list[ap.Token]:
        return self._all_pages(self.tokens.ListTokens, ap.ListTokensRequest(page_size=1000), "tokens")

    def revoke_token(self, name: str) -> ap.Token:
        return self.tokens.RevokeToken(ap.RevokeTokenRequest(name=name), timeout=self.timeout)

    # ------------------------------------------------------------ audit log

    def list_audit_events(self, *, principal: str = "", method: str = "", resource: str = "",
                          after: datetime | None = None, before: datetime | None = None,
                          most: int | None = None) -> list[ap.AuditEvent]:
        """The audit log's events, newest first: every one matching the filters, or the newest `most`.
        `method` is an RPC's name ("DeletePrompt"); `resource` also matches what is inside it
        (`prompts/p` finds `prompts/p/versions/2`); `after` is inclusive, `before` exclusive (naive = UTC)."""
        if most is not None:
            most = integer(most, "most", 1, 1 << 62)  # 0 would read as "no limit"
        req = ap.ListAuditEventsRequest(principal=principal, method=method, resource=resource,
                                        after=to_timestamp(after, "after"), before=to_timestamp(before, "before"),
                                        page_size=min(most, 1000) if most else 1000)
        return self._all_pages(self.tokens.ListAuditEvents, req, "events", most)
