"""A REST request's body: read only once the call is allowed (coordinator/rest/app.py decides that from the
headers first), within its route's cap from the limits table, with a deadline on every read, and parsed off the
event loop when it is large, so that one big body never holds up the other calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from aiohttp import web
from google.protobuf.message import Message

from coordinator.limits import Limits
from coordinator.rest.routes import Route
from coordinator.rest.transcode import build_request

BULK = frozenset({"Classify", "CreateTrainJob", "ImportPromptVersion", "UploadDataset"})  # bodies that carry data
PARSE_INLINE_BYTES = 64 << 10  # larger bodies are parsed in a thread while the event loop serves the others


class BodyStalled(asyncio.CancelledError):
    """No byte of the body came within the body timeout: the call is cancelled, as if its caller had left
    (a service reading an upload stops as it would then), and the caller gets HTTP 408."""


@dataclass(frozen=True)
class BodyReader:
    limits: Limits
    idle_s: float  # ServerConfig.http_body_timeout_s

    @staticmethod
    def cap(route: Route) -> str:
        """The field of Limits that caps this route's body (or each line of an upload)."""
        return "rest_bulk_bytes" if route.rpc.rsplit("/", 1)[-1] in BULK else "rest_body_bytes"

    def check_length(self, request: web.Request, name: str) -> None:
        """RESOURCE_EXHAUSTED before a byte is read when the declared length is over cap `name` (a Limits field)."""
        if request.content_length is not None:
            self.limits.check(name, request.content_length, "the request body (Content-Length): bytes")

    async def _next(self, request: web.Request) -> bytes:
        try:
            async with asyncio.timeout(self.idle_s):
                return await request.content.readany()
        except TimeoutError:
            raise BodyStalled(f"no byte of the request body came for {self.idle_s:g} s; the limit is "
                              f"{self.idle_s:g} s (promptbank serve --http-body-timeout)") from None

    async def read(self, request: web.Request, route: Route) -> bytes:
        """The whole body, within the route's cap."""
        return await self.read_within(request, self.cap(route))

    async def read_within(self, request: web.Request, name: str) -> bytes:
        """The whole body, within cap `name` (a Limits field)."""
        self.check_length(request, name)
        body = bytearray()
        while chunk := await self._next(request):
            body += chunk
            self.limits.check(name, len(body), "the request body: bytes")
        return bytes(body)

    async def lines(self, request: web.Request, route: Route) -> AsyncIterator[bytes]:
        """A JSON-lines body one non-blank line at a time, as it arrives; each line within the route's cap."""
        name, buf = self.cap(route), bytearray()
        while chunk := await self._next(request):
            buf += chunk
            while (end := buf.find(b"\n")) >= 0:
                line = bytes(buf[:end])
                del buf[:end + 1]
                if line.strip():
                    yield line
            self.limits.check(name, len(buf), "a line of the upload: bytes")
        if bytes(buf).strip():
            yield bytes(buf)


async def parse(route: Route, variables: dict[str, str], query: Iterable[tuple[str, str]], body: bytes) -> Message:
    """`build_request`, in a thread when the body is large: JSON of many small objects takes seconds to parse."""
    if len(body) <= PARSE_INLINE_BYTES:
        return build_request(route, variables, query, body)
    return await asyncio.to_thread(build_request, route, variables, list(query), body)
