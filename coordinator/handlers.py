"""One way to wrap a gRPC method handler, whatever its kind, for the server interceptors (errors, auth).

grpc has four handler kinds; an interceptor wants to say only what happens around a call that returns one
response (`around_unary`) and around one that streams responses (`around_stream`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Stream = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def rewrap(handler: grpc.RpcMethodHandler, around_unary: Callable[[Unary], Unary],
           around_stream: Callable[[Stream], Stream]) -> grpc.RpcMethodHandler:
    """The same handler kind with its behaviour wrapped; (de)serializers kept. (grpc's stubs type a handler's
    behaviours as the sync server's functions; under grpc.aio they are the coroutine functions of `Unary`/`Stream`.)"""
    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(around_unary(cast(Unary, handler.unary_unary)), des, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(around_unary(cast(Unary, handler.stream_unary)), des, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(around_stream(cast(Stream, handler.unary_stream)), des, ser)
    return grpc.stream_stream_rpc_method_handler(around_stream(cast(Stream, handler.stream_stream)), des, ser)


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that only rewraps existing handlers: subclasses say how in `wrap`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        return handler if handler is None else await self.wrap(handler, details)

    async def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        raise NotImplementedError
