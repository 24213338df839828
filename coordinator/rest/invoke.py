"""Calling the gRPC servicers in-process, through the gRPC server's own interceptor chain.

`HandlerTable` stands in for the grpc.aio server while the servicers register (`add_*_to_server`): it passes
every registration on and keeps the handlers. `Invoker` resolves a method's handler through the same
interceptors, in the same order, as grpc.aio does, so metrics, error mapping, auth and audit run exactly as
for a gRPC call. `HttpContext` is the servicer context those interceptors see: what they abort with is what
the HTTP caller gets. A call's deadline (coordinator/rest/deadline.py) is kept here as grpc.aio keeps a gRPC
call's: when it passes, the call's work is cancelled (a Classify's rows leave their batch, a Generate's row its
replica's) and the caller gets DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import grpc

from coordinator.rest.deadline import Deadline, scope


class RpcError(Exception):
    """A call ended with a non-OK status (the code and message the interceptors decided)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class CallDetails:
    """What grpc.HandlerCallDetails carries: the method path and the call's metadata (lower-case keys); and the
    call's deadline, which gRPC keeps beside them."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]
    deadline: Deadline | None = None


class Opened:
    """What `Invoker.stream` yields first: the call was accepted (see coordinator/accepted.py)."""

    def __repr__(self) -> str:
        return "OPENED"


OPENED: Final = Opened()


class HttpContext:
    """The part of grpc.aio.ServicerContext that the interceptors and servicers use, for a call over HTTP.
    `on_accept`: what a server stream's `accepted()` runs."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], peer: str, deadline: Deadline | None = None,
                 on_accept: Callable[[], Awaitable[None]] | None = None):
        self._metadata, self._peer, self._deadline, self._on_accept = metadata, peer, deadline, on_accept
        self._code: grpc.StatusCode | None = None
        self._details = ""

    async def accepted(self) -> None:
        """The servicer's checks passed and its work begins: a REST stream opens here (coordinator/accepted.py)."""
        if self._on_accept is not None:
            await self._on_accept()

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
        return None if self._deadline is None else self._deadline.remaining()

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
        ctx = HttpContext(details.invocation_metadata, peer, details.deadline)
        call = cast(UnaryBehaviour | None, handler.unary_unary or handler.stream_unary)
        if call is None:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"{details.method} streams its responses")
        _check_time(details.deadline)
        timer = scope(details.deadline)
        try:
            async with timer:
                return await call(request, ctx)
        except grpc.aio.AbortError:
            raise ctx.failure() from None
        except TimeoutError:
            if timer.expired():
                raise _passed(details.deadline) from None
            raise

    async def stream(self, handler: grpc.RpcMethodHandler, details: CallDetails, request: Any,
                     peer: str) -> AsyncGenerator[Any, None]:
        """A server stream: OPENED once the servicer accepted the call (or with its first response, or its end,
        from one that never says), then its responses; a status it ends with is raised as RpcError. The servicer
        runs in a task of its own (so a call can open while it waits for its work), one response ahead at most;
        closing this stream, or the deadline passing, cancels it."""
        call = cast(StreamBehaviour | None, handler.unary_stream or handler.stream_stream)
        if call is None:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"{details.method} does not stream its responses")
        _check_time(details.deadline)
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue(maxsize=1)
        opened = False

        async def accept() -> None:
            nonlocal opened
            if not opened:
                opened = True
                await queue.put((OPENED, None))

        ctx = HttpContext(details.invocation_metadata, peer, details.deadline, accept)

        async def pump() -> None:
            timer = scope(details.deadline)
            try:
                async with timer:
                    async with contextlib.aclosing(call(request, ctx)) as responses:
                        async for item in responses:
                            await accept()
                            await queue.put((item, None))
                await accept()
                await queue.put((_END, None))
            except grpc.aio.AbortError:
                await queue.put((None, ctx.failure()))
            except TimeoutError as exc:
                await queue.put((None, _passed(details.deadline) if timer.expired() else exc))
            except Exception as exc:  # noqa: BLE001 - handed to the reader
                await queue.put((None, exc))

        task = asyncio.create_task(pump())
        try:
            while True:
                item, failure = await queue.get()
                if failure is not None:
                    raise failure
                if item is _END:
                    return
                yield item
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


_END: Final = object()  # the pump's last item


def _check_time(deadline: Deadline | None) -> None:
    """A call whose deadline passed before it began (its body took that long) does not begin."""
    if deadline is not None and deadline.remaining() <= 0:
        raise _passed(deadline)


def _passed(deadline: Deadline | None) -> RpcError:
    return RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, deadline.passed() if deadline else "deadline exceeded")
