"""Typed SDK errors: one exception class per gRPC status, raised by every `Client` call, streams included.

Each class is still a `grpc.RpcError` with `.code()` and `.details()`, so `except grpc.RpcError` code keeps
working while new code writes `except NotFound`. One channel interceptor (`TypedErrors`, installed by `Client`)
turns every failed call into its class, so no method of the client converts errors on its own.

    from promptbank.errors import NotFound
    try:
        client.get_prompt("prompts/missing")
    except NotFound as err:
        print(err.details())
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

if TYPE_CHECKING:
    _Future = grpc.Future[Any]  # generic in the stubs only
else:
    _Future = grpc.Future


class CallError(grpc.RpcError, grpc.Call, _Future):
    """A call the server (or the connection to it) refused. `str(err)` is `CODE: details`; `.code()`,
    `.details()`, `.trailing_metadata()` and `.debug_error_string()` answer as grpc's own error does."""

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, cause: grpc.RpcError):
        self._cause = cause
        super().__init__(f"{self.code().name}: {self.details()}")

    # grpc.Call: what the failed call said
    def code(self) -> grpc.StatusCode:
        code = getattr(self._cause, "code", None)
        return code() if callable(code) else self.status

    def details(self) -> str:
        details = getattr(self._cause, "details", None)
        return (details() if callable(details) else None) or ""

    def initial_metadata(self) -> Any:
        return self._cause.initial_metadata() if hasattr(self._cause, "initial_metadata") else None

    def trailing_metadata(self) -> Any:
        return self._cause.trailing_metadata() if hasattr(self._cause, "trailing_metadata") else None

    def debug_error_string(self) -> str:
        debug = getattr(self._cause, "debug_error_string", None)
        return debug() if callable(debug) else ""

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:  # type: ignore[override]  # grpc documents None; its stubs say float
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    # grpc.Future: a finished call that failed (grpc's interceptor asks `.result()` of what it gets back)
    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> CallError:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return self.__traceback__

    def add_done_callback(self, fn: Callable[[_Future], None]) -> None:
        fn(self)


class Cancelled(CallError):
    """The call was cancelled (by the caller, or by a server shutting down under it)."""
    status = grpc.StatusCode.CANCELLED


class Unknown(CallError):
    """The server raised something it could not classify."""
    status = grpc.StatusCode.UNKNOWN


class InvalidArgument(CallError):
    """The request is malformed or names a bad value; the message names it. Do not retry unchanged."""
    status = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(CallError):
    """The call's deadline (`Client(timeout=...)` or the method's `timeout`) passed before an answer."""
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(CallError):
    """A named prompt, version, alias, job, backbone, dataset or token does not exist."""
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CallError):
    """The name is taken, or a request_id was reused with a different payload."""
    status = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(CallError):
    """The caller's role or ownership does not allow this, or a path lies outside the server's roots."""
    status = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(CallError):
    """A limit was hit (rows, characters, message size, running sequences); the message says which."""
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(CallError):
    """The system is not in a state for this (e.g. a prompt used with another backbone, a job already ended)."""
    status = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(CallError):
    """A concurrent change to the same resource won; retrying is safe."""
    status = grpc.StatusCode.ABORTED


class OutOfRange(CallError):
    """A value is past the end of what exists (e.g. a page token or a sequence number)."""
    status = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(CallError):
    """The server does not offer this method (an older server, or a kind of model it cannot serve)."""
    status = grpc.StatusCode.UNIMPLEMENTED


class Internal(CallError):
    """The server failed; details are in its logs, not in the message."""
    status = grpc.StatusCode.INTERNAL


class Unavailable(CallError):
    """The server is unreachable (down, restarting, a TLS mismatch) or a replica is not serving; retry later."""
    status = grpc.StatusCode.UNAVAILABLE


class DataLoss(CallError):
    """Stored data is corrupt (e.g. a tensor whose hash no longer matches)."""
    status = grpc.StatusCode.DATA_LOSS


class Unauthenticated(CallError):
    """No token, or an unknown, revoked or expired one."""
    status = grpc.StatusCode.UNAUTHENTICATED


BY_CODE: dict[grpc.StatusCode, type[CallError]] = {
    cls.status: cls for cls in (Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                                PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
                                Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}


class _Said(grpc.RpcError):
    """A failure this side puts in words (a server that never answered), as the status it stands for."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def said(cls: type[CallError], details: str) -> CallError:
    """An error of class `cls` whose details are `details`: for what the client knows better than grpc does."""
    return cls(_Said(cls.status, details))


def typed(err: grpc.RpcError) -> CallError:
    """The typed error for a failed call (itself when it is one already); an unknown code becomes `Unknown`."""
    if isinstance(err, CallError):
        return err
    code = getattr(err, "code", None)
    return BY_CODE.get(code() if callable(code) else grpc.StatusCode.UNKNOWN, Unknown)(err)


def _settled(outcome: Any) -> Any:
    """A unary call's outcome with its failure typed. grpc hands a failed call back as an RpcError that is also
    a finished Future; an exception raised on this side (e.g. a request that fails to serialize) stays as it is."""
    if isinstance(outcome, grpc.Future) and outcome.done():
        failure = outcome.exception()
        if isinstance(failure, grpc.RpcError):
            return typed(failure)
    return outcome


class _TypedStream:
    """A response stream whose failure, met while iterating, is raised typed; everything else is the call's."""

    def __init__(self, call: Any):
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as err:
            raise typed(err) from None

    def __getattr__(self, name: str) -> Any:  # cancel(), code(), initial_metadata(), ...
        return getattr(self._call, name)


class TypedErrors(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """The one place a failed call becomes its typed error, for all four kinds of RPC."""

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return _settled(continuation(details, request))

    def intercept_unary_stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return _TypedStream(continuation(details, request))

    def intercept_stream_unary(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return _settled(continuation(details, requests))

    def intercept_stream_stream(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return _TypedStream(continuation(details, requests))
