"""Calling the gRPC servicers in-process, through the gRPC server's own interceptor chain.

`HandlerTable` stands in for the grpc.aio server while the servicers register (`add_*_to_server`): it passes
every registration on and keeps the handlers. `Invoker` resolves a method's handler through the same
interceptors, in the same order, as grpc.aio does, so metrics, error mapping, auth and audit run exactly as
for a gRPC call. `HttpContext` is the servicer context those interceptors see: what they abort with is what
the HTTP caller gets.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc


class RpcError(Exception):
    """A call ended with a non-OK status (the code and message the interceptors decided)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class CallDetails:
    """What grpc.HandlerCallDetails carries: the method path and the call's metadata (lower-case keys)."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class HttpContext:
    """The part of grpc.aio.ServicerContext that the interceptors and servicers use, for a call over HTTP."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], peer: str):
        self._metadata, self._peer = metadata, peer
        self._code: grpc.StatusCode | None = None
        self._details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self._code, self._details = code, details
        raise grpc.aio.AbortError(details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None

    def cancelled(self) -> bool:
        return False

    def failure(self) -> RpcError:
        """The status an abort left (a bare AbortError without one is INTERNAL)."""
        return RpcError(self._code or grpc.StatusCode.INTERNAL, self._details or "internal error")


class HandlerTable:
    """The gRPC server, as the generated `add_*Servicer_to_server` functions see it, remembering what they add."""

    def __init__(self, server: grpc.aio.Server):
        self.server = server
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(handlers)
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.server.add_registered_method_handlers(service, handlers)

    def lookup(self, details: CallDetails) -> grpc.RpcMethodHandler | None:
        for generic in self.generic:
            handler = generic.service(details)  # type: ignore[arg-type]  # CallDetails: a frozen HandlerCallDetails
            if handler is not None:
                return handler
        return None


Continuation = Callable[[CallDetails], Awaitable[grpc.RpcMethodHandler | None]]
# A service's behaviours as called here: grpc.aio's coroutine functions (grpc's stubs type the sync server's), given
# an HttpContext where grpc would give its ServicerContext.
UnaryBehaviour = Callable[[Any, "HttpContext"], Awaitable[Any]]
StreamBehaviour = Callable[[Any, "HttpContext"], AsyncGenerator[Any, None]]


class Invoker:
    """Runs RPCs in-process: the handler of `table` wrapped by `interceptors` (outermost first, as given to
    grpc.aio.server)."""

    def __init__(self, table: HandlerTable, interceptors: Sequence[grpc.aio.ServerInterceptor]):
        self.table, self.interceptors = table, tuple(interceptors)

    async def handler(self, details: CallDetails) -> grpc.RpcMethodHandler:
        async def base(d: CallDetails) -> grpc.RpcMethodHandler | None:
            return self.table.lookup(d)

        chain: Continuation = base
        for interceptor in reversed(self.interceptors):
            chain = functools.partial(interceptor.intercept_service, chain)  # type: ignore[arg-type]  # (as above)
        handler = await chain(details)
        if handler is None:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"{details.method} is not served here")
        return handler

    async def unary(self, handler: grpc.RpcMethodHandler, details: CallDetails, request: Any, peer: str) -> Any:
        """One response from `handler` (resolved by `handler()`): a unary call, or a client stream when `request`
        is an async iterator of messages."""
        ctx = HttpContext(details.invocation_metadata, peer)
        call = cast(UnaryBehaviour | None, handler.unary_unary or handler.stream_unary)
        if call is None:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"{details.method} streams its responses")
        try:
            return await call(request, ctx)
        except grpc.aio.AbortError:
            raise ctx.failure() from None

    async def stream(self, handler: grpc.RpcMethodHandler, details: CallDetails, request: Any,
                     peer: str) -> AsyncGenerator[Any, None]:
        """A server stream's responses; a status it ends with is raised as RpcError."""
        ctx = HttpContext(details.invocation_metadata, peer)
        call = cast(StreamBehaviour | None, handler.unary_stream or handler.stream_stream)
        if call is None:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"{details.method} does not stream its responses")
        responses = call(request, ctx)
        try:
            async for item in responses:
                yield item
        except grpc.aio.AbortError:
            raise ctx.failure() from None
        finally:
            await responses.aclose()
