"""A bearer token on every call: one client interceptor for all four kinds of RPC."""

from __future__ import annotations

import collections
from typing import Any

import grpc


class _Details(collections.namedtuple("_Details", ["method", "timeout", "metadata", "credentials",
                                                     "wait_for_ready", "compression"]),
               grpc.ClientCallDetails):
    """ClientCallDetails with metadata added (grpc's own type is abstract)."""


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <secret>`; the secret is kept only here and never printed."""

    def __init__(self, secret: str):
        self._header = ("authorization", f"Bearer {secret}")

    def __repr__(self) -> str:
        return "BearerToken(***)"

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _Details(details.method, details.timeout, metadata, details.credentials,
                        getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)
