"""gRPC status -> HTTP status (the google.rpc.Code mapping) and the `google.rpc.Status` JSON body of an error.

The status code and message are the ones gRPC callers get: coordinator/errors.py maps domain errors to codes
in one place, and the REST face only translates the code to HTTP.
"""

from __future__ import annotations

from typing import Any

import grpc

HTTP_STATUS: dict[grpc.StatusCode, int] = {  # google/rpc/code.proto's HTTP mapping
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def status_body(code: grpc.StatusCode, message: str) -> dict[str, Any]:
    """A `google.rpc.Status` in JSON: the numeric code, the message, no details."""
    return {"code": code.value[0], "message": message, "details": []}
