"""Domain errors -> gRPC status codes, in one place (an aio server interceptor).

Unknown exceptions become INTERNAL with a generic message; the details go only to the log.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from coordinator.handlers import HandlerInterceptor, Stream, Unary, rewrap
from promptbank_api import errors as e

log = logging.getLogger("promptbank.coordinator")

CODES: dict[type[BaseException], grpc.StatusCode] = {
    e.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    e.NotFound: grpc.StatusCode.NOT_FOUND,
    e.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    e.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    e.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    e.Aborted: grpc.StatusCode.ABORTED,
    e.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    e.Unavailable: grpc.StatusCode.UNAVAILABLE,
    NotImplementedError: grpc.StatusCode.UNIMPLEMENTED,  # generated servicer base for RPCs not built yet
}


def root_cause(exc: BaseException) -> BaseException:
    """The worker's own exception when `exc` is Ray's wrapper of it (a RayTaskError carries it as `cause`)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    exc = root_cause(exc)
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls], str(exc)
    return grpc.StatusCode.INTERNAL, "internal error; see the coordinator log"


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
    code, message = status_for(exc)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        message = f"{method} is not implemented yet"
    if code is grpc.StatusCode.INTERNAL:
        log.exception("unhandled error in %s", method, exc_info=exc)
    else:
        log.info("%s -> %s: %s", method, code.name, message)
    await context.abort(code, message)


class ErrorInterceptor(HandlerInterceptor):
    """Wraps every handler so that a raised domain error aborts the call with its status code."""

    async def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method

        def around_unary(inner: Unary) -> Unary:
            async def single(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await inner(request, context)
                except (grpc.aio.AbortError, grpc.aio.UsageError):
                    raise
                except Exception as exc:  # noqa: BLE001 - the one place errors are mapped
                    await _abort(context, method, exc)

            return single

        def around_stream(inner: Stream) -> Stream:
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    async for item in inner(request, context):
                        yield item
                except (grpc.aio.AbortError, grpc.aio.UsageError):
                    raise
                except Exception as exc:  # noqa: BLE001
                    await _abort(context, method, exc)

            return stream

        return rewrap(handler, around_unary, around_stream)
