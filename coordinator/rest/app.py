"""The HTTP server: REST/JSON for every annotated RPC, Server-Sent Events for server streams, `/openapi.json`,
and the web console at `/`. It runs on the coordinator's event loop beside grpc.aio (aiohttp), on `--http-port`,
with the gRPC port's TLS settings, and answers every RPC through `Invoker`: the same servicers, interceptors,
limits and metrics as gRPC. Errors are `google.rpc.Status` JSON with the gRPC code and message. A call may
carry a deadline (`grpc-timeout` or `X-Request-Timeout`, coordinator/rest/deadline.py): past it, its work is
cancelled and it ends DEADLINE_EXCEEDED (504).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from coordinator.auth import refused
from coordinator.config import ServerConfig
from coordinator.errors import status_for
from coordinator.metrics import transport
from coordinator.rest.body import BodyReader, BodyStalled, parse
from coordinator.rest.deadline import deadline_of
from coordinator.rest.guard import refusal
from coordinator.rest.invoke import OPENED, CallDetails, Invoker, RpcError
from coordinator.rest.listener import handler_options, listen
from coordinator.rest.openai_face import OpenAIFace
from coordinator.rest.routes import NoRoute, Route, Router
from coordinator.rest.status import HTTP_STATUS, status_body
from coordinator.rest.transcode import dumps, to_json
from promptbank_api.errors import PromptBankError, ResourceExhausted

log = logging.getLogger("promptbank.coordinator")
CONSOLE = Path(__file__).resolve().parents[1] / "console"
OPENAPI = Path(__file__).with_name("openapi.json")
OVER_CAP = web.RequestKey("over_cap", bool)  # set on a request whose upload had a line over its cap
NDJSON = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines"})
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SECURITY_HEADERS = {  # the console loads only its own files; nothing is framed or sniffed
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def error_response(code: grpc.StatusCode, message: str, http_status: int | None = None) -> web.Response:
    return web.Response(body=dumps(status_body(code, message)), content_type="application/json",
                        status=http_status or HTTP_STATUS.get(code, 500))


def json_response(msg: Message) -> web.Response:
    return web.Response(body=dumps(to_json(msg)), content_type="application/json")


def sse(data: Any, event: str = "") -> bytes:
    """One Server-Sent Event: `data:` the JSON of a message (or a Status), after `event:` when not a message."""
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + dumps(data) + b"\n\n"


def _metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    auth = request.headers.get("Authorization", "")
    return (("authorization", auth),) if auth else ()


async def _one(message: Message) -> AsyncIterator[Message]:
    yield message


class Api:
    """Every REST route: find it, let the interceptors decide the call from its headers, only then read and parse
    the body (within its route's cap), run the RPC through the invoker, write its JSON."""

    def __init__(self, router: Router, invoker: Invoker, body: BodyReader, auth_off: bool):
        self.router, self.invoker, self.body, self.auth_off = router, invoker, body, auth_off

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        transport.set("http")  # this handler's own context: the RPC interceptor labels the call
        content_type = request.content_type if "Content-Type" in request.headers else ""
        turned_away = refusal(request.method, content_type, request.headers, self.auth_off)
        if turned_away is not None:
            return error_response(turned_away[1], turned_away[2], turned_away[0])
        try:
            route, values = self.router.find(request.method, request.rel_url.raw_path)
        except NoRoute as exc:
            if exc.allowed:
                return error_response(grpc.StatusCode.UNIMPLEMENTED, str(exc), 405)
            return error_response(grpc.StatusCode.NOT_FOUND, str(exc))
        peer = str(request.remote or "")
        try:
            details = CallDetails(route.rpc, _metadata(request), deadline_of(request.headers))
            handler = await self.invoker.handler(details)  # auth decides here, from the headers alone
            try:
                message = await self._request(request, route, values, handler)
            except ResourceExhausted as exc:  # a body over its cap: refused before it is read or parsed
                return error_response(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), 413)
            if route.server_streaming:
                return await self._events(request, handler, details, message, peer)
            return json_response(await self.invoker.unary(handler, details, message, peer))
        except RpcError as exc:
            return error_response(exc.code, exc.message, 413 if request.get(OVER_CAP) else None)
        except PromptBankError as exc:  # a request that does not transcode: mapped where domain errors are
            return error_response(*status_for(exc))
        except BodyStalled as exc:  # the caller stopped sending: answer, and close rather than wait for the rest
            response = error_response(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc), 408)
            response.force_close()
            return response
        except Exception:  # noqa: BLE001 - as for gRPC: INTERNAL with a generic message, the details in the log
            log.exception("unhandled error in REST %s %s", request.method, request.rel_url.path)
            return error_response(grpc.StatusCode.INTERNAL, "internal error; see the coordinator log")

    async def _request(self, request: web.Request, route: Route, values: dict[str, str],
                       handler: grpc.RpcMethodHandler) -> Any:
        """The RPC's request: none for a call already refused (its body is never read), a stream of messages for
        a JSON-lines upload, else one message from the path, the query and the body."""
        if refused(handler):
            return None
        if route.client_streaming and request.content_type in NDJSON:
            return self._lines(request, route, values)
        body = await self.body.read(request, route) if route.body else b""
        message = await parse(route, values, request.query.items(), body)
        return _one(message) if route.client_streaming else message

    async def _lines(self, request: web.Request, route: Route, values: dict[str, str]) -> AsyncIterator[Message]:
        """A client stream from one POST of JSON lines (Content-Type application/x-ndjson): one message per line,
        read and parsed as it arrives."""
        try:
            async for line in self.body.lines(request, route):
                yield await parse(route, values, (), line)
        except ResourceExhausted:  # a line over its cap: the service ends the call with it; the answer is a 413
            request[OVER_CAP] = True
            raise

    async def _events(self, request: web.Request, handler: grpc.RpcMethodHandler, details: CallDetails,
                      message: Message, peer: str) -> web.StreamResponse:
        """A server stream as Server-Sent Events. Its headers go as soon as the servicer accepts the call (its
        checks passed: coordinator/accepted.py), before the first event, so the client sees the stream open while
        the work waits; then one `data:` event per message, then `event: end`, or `event: error` with the Status
        (a deadline that passes, for one). A status before the stream opens is a plain HTTP error."""
        responses = self.invoker.stream(handler, details, message, peer)
        try:
            try:
                opened = await anext(responses)
            except RpcError as exc:
                return error_response(exc.code, exc.message)
            assert opened is OPENED, "a server stream opens before its first message"
            out = web.StreamResponse(headers=SSE_HEADERS)
            await out.prepare(request)  # the status line and headers go now (a StreamResponse does not hold them)
            try:
                async for item in responses:
                    await out.write(sse(to_json(item)))
                await out.write(sse({}, "end"))
            except RpcError as exc:
                await out.write(sse(status_body(exc.code, exc.message), "error"))
            except ConnectionResetError:  # the caller left; the stream is closed below
                pass
            return out
        finally:
            await responses.aclose()


@web.middleware
async def security_headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


async def console_index(_: web.Request) -> web.StreamResponse:
    return web.FileResponse(CONSOLE / "index.html", headers={"Cache-Control": "no-cache"})


async def openapi(_: web.Request) -> web.StreamResponse:
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The gRPC port's TLS (and mutual TLS) settings, for HTTPS."""
    if not config.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_client_ca:
        ctx.load_verify_locations(config.tls_client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@dataclass
class RestServer:
    """The running HTTP server; `url` is what a browser opens."""

    runner: web.AppRunner
    listener: asyncio.Server
    port: int
    url: str

    async def stop(self) -> None:
        """Stops listening, lets requests in flight finish within the grace period, then ends the rest."""
        self.listener.close()
        await self.runner.cleanup()


async def start_http(config: ServerConfig, invoker: Invoker, routes: list[Route],
                     backbones: Callable[[], Collection[str]] = tuple) -> RestServer:
    """`backbones`: the names of the backbones served now (the OpenAI face's `model` may name one)."""
    assert config.http_port is not None
    app = web.Application(middlewares=[security_headers])  # /v1 bodies: read and capped by BodyReader
    OpenAIFace(config, invoker, backbones).add_routes(app)  # before the catch-all below
    app.router.add_route("*", "/v1/{tail:.*}", Api(Router(routes), invoker,
                                                   BodyReader(config.limits, config.http_body_timeout_s),
                                                   config.auth == "none"))
    app.router.add_get("/", console_index)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_static("/console/", CONSOLE)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=config.grace_seconds,
                           **handler_options(config))
    await runner.setup()
    tls = ssl_context(config)
    try:
        listener = await listen(runner, config, config.host, config.http_port, tls)
    except OSError as exc:
        if not config.http_any_port:
            await runner.cleanup()
            raise OSError(f"could not serve HTTP on {config.host}:{config.http_port}: {exc}") from exc
        log.info("HTTP port %d is taken (%s); serving REST and the console on a free port", config.http_port, exc)
        listener = await listen(runner, config, config.host, 0, tls)
    port = int(listener.sockets[0].getsockname()[1])
    host = f"[{config.host}]" if ":" in config.host else config.host
    return RestServer(runner, listener, port, f"{'https' if config.tls else 'http'}://{host}:{port}/")
