"""A server stream's servicer says when its call is accepted: its checks passed (the caller may use it, what it
names exists, its arguments are sound) and what remains is the work, which may wait (a Generate queued on its
replica, a watch until the job's next event).

Over REST that is where the Server-Sent Events stream opens: its headers go at once, so a client sees the call
accepted while its work waits, and a status before it is a plain HTTP error (coordinator/rest/app.py). Over
gRPC nothing is sent: response headers would commit the call, and gRPC's retry policy (the SDK's, in
promptbank/retry.py) retries a Generate whose replica died before its first response only while it is not.
"""

from __future__ import annotations

from typing import Any


async def accepted(context: Any) -> None:
    """Tell the call's face that the call is accepted; a no-op for a gRPC context (grpc.aio's has no `accepted`).
    `context` is the servicer's: the interceptors hand it on as they got it."""
    hook = getattr(context, "accepted", None)
    if hook is not None:
        await hook()
