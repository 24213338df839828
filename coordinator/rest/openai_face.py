"""The OpenAI-compatible face on the REST port: `POST /v1/completions`, `POST /v1/chat/completions`,
`GET /v1/models`. A thin adapter: each choice is one Generate call (ListPrompts and ListBackbones for the models)
run through the invoker, so the same bearer tokens, roles, limits, metrics and audit apply as to every RPC;
answers and errors are in OpenAI's shapes (coordinator/rest/openai_wire.py). A deadline header applies as on
every REST route (coordinator/rest/deadline.py; 504 when it passes). A stream opens (its headers go) once every
choice's call is accepted, before the first token. docs/openai.md says what is supported.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from coordinator.auth import BARE_BACKBONE_ROLE, AuthInterceptor, refused
from coordinator.config import ServerConfig
from coordinator.errors import status_for
from coordinator.metrics import transport
from coordinator.rest import openai_wire as wire
from coordinator.rest.body import BodyReader, BodyStalled
from coordinator.rest.deadline import deadline_of
from coordinator.rest.guard import refusal
from coordinator.rest.invoke import CallDetails, Invoker, Opened, RpcError
from coordinator.rest.streams import interleave, prepend
from coordinator.rest.transcode import dumps, unique_names
from promptbank_api.errors import PromptBankError, ResourceExhausted
from promptbank_api.names import strip_collection
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import inference_pb2 as inf

GENERATE = "/promptbank.v1.Inference/Generate"
LIST_PROMPTS = "/promptbank.v1.PromptCatalog/ListPrompts"
LIST_BACKBONES = "/promptbank.v1.PromptCatalog/ListBackbones"
GENERATIVE = (cat.ARCHITECTURE_CAUSAL_LM, cat.ARCHITECTURE_SEQ2SEQ)
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Indexed = tuple[int, inf.GenerateResponse]
Marked = tuple[int, inf.GenerateResponse | Opened]  # a choice's messages, after OPENED when its call was accepted


class Refused(Exception):
    """An OpenAI error answer: HTTP status, message, code."""

    def __init__(self, http_status: int, message: str, code: grpc.StatusCode | str):
        super().__init__(message)
        self.http_status, self.message, self.code = http_status, message, code

    @classmethod
    def of(cls, exc: RpcError, model: str = "") -> Refused:
        if exc.code is grpc.StatusCode.NOT_FOUND and model:
            return cls(404, f"model {model!r}: {exc.message}", "model_not_found")
        message = exc.message.replace("max_new_tokens=", "max_tokens=")  # OpenAI's name for it
        return cls(wire.http_status(exc.code), message, exc.code)

    def response(self) -> web.Response:
        return web.Response(body=dumps(wire.error_body(self.http_status, self.message, self.code)),
                            status=self.http_status, content_type="application/json")


def _chunk(data: Any) -> bytes:
    return b"data: " + dumps(data) + b"\n\n"


class OpenAIFace:
    """The three routes; `backbones` names the backbones this coordinator serves now."""

    def __init__(self, config: ServerConfig, invoker: Invoker, backbones: Callable[[], Collection[str]]):
        self.invoker, self.backbones, self.limits = invoker, backbones, config.limits
        self.body = BodyReader(config.limits, config.http_body_timeout_s)
        self.auth_off = config.auth == "none"
        self.auth = next(i for i in invoker.interceptors if isinstance(i, AuthInterceptor))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)

    # ------------------------------------------------------------ plumbing

    async def _answer(self, request: web.Request, rpc: str,
                      run: Callable[[CallDetails, grpc.RpcMethodHandler], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        """Guard, then auth from the headers alone (a refused call's body is never read), then `run`; every error
        in OpenAI's shape."""
        transport.set("http")
        content_type = request.content_type if "Content-Type" in request.headers else ""
        turned_away = refusal(request.method, content_type, request.headers, self.auth_off)
        if turned_away is not None:
            return Refused(turned_away[0], turned_away[2], turned_away[1]).response()
        auth = request.headers.get("Authorization", "")
        try:
            details = CallDetails(rpc, (("authorization", auth),) if auth else (), deadline_of(request.headers))
            handler = await self.invoker.handler(details)
            if refused(handler):
                await self._refusal(handler, details)
            return await run(details, handler)
        except Refused as exc:
            return exc.response()
        except RpcError as exc:
            return Refused.of(exc).response()
        except PromptBankError as exc:  # a malformed body (400), too much of something (429)
            code, message = status_for(exc)
            return Refused(wire.http_status(code), message, code).response()
        except BodyStalled as exc:
            response = Refused(408, str(exc), grpc.StatusCode.DEADLINE_EXCEEDED).response()
            response.force_close()
            return response

    async def _refusal(self, handler: grpc.RpcMethodHandler, details: CallDetails) -> None:
        """Runs a refused call's handler for the status the interceptors decided (raised as RpcError)."""
        if handler.stream_unary:
            await self.invoker.unary(handler, details, None, "")
        else:
            async with contextlib.aclosing(self.invoker.stream(handler, details, None, "")) as responses:
                await anext(responses)
        raise RpcError(grpc.StatusCode.INTERNAL, "a refused call did not end")  # pragma: no cover

    @staticmethod
    def _peer(request: web.Request) -> str:
        return str(request.remote or "")

    async def _json(self, request: web.Request) -> Any:
        """The body as JSON, within --limit-rest-body-bytes (HTTP 413 over it)."""
        try:
            raw = await self.body.read_within(request, "rest_body_bytes")
        except ResourceExhausted as exc:
            raise Refused(413, str(exc), grpc.StatusCode.RESOURCE_EXHAUSTED) from None
        try:
            return json.loads(raw, object_pairs_hook=unique_names)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Refused(400, f"the body is not JSON: {exc}", grpc.StatusCode.INVALID_ARGUMENT) from None
        except PromptBankError as exc:  # a name given twice
            raise Refused(400, str(exc), grpc.StatusCode.INVALID_ARGUMENT) from None

    async def _generate(self, details: CallDetails, message: inf.GenerateRequest, peer: str
                        ) -> AsyncIterator[inf.GenerateResponse | Opened]:
        """One Generate call, resolved through the interceptors as a call of its own (its own metrics and log):
        OPENED when it is accepted, then its messages."""
        handler = await self.invoker.handler(details)
        async with contextlib.aclosing(self.invoker.stream(handler, details, message, peer)) as responses:
            async for item in responses:
                yield item

    def _merged(self, details: CallDetails, c: wire.Completion, peer: str) -> AsyncGenerator[Marked, None]:
        """Every choice's messages as they come, each with its choice's index."""
        return interleave([self._generate(details, m, peer) for m in c.requests])

    # ------------------------------------------------------------ routes

    async def completions(self, request: web.Request) -> web.StreamResponse:
        async def run(details: CallDetails, _: grpc.RpcMethodHandler) -> web.StreamResponse:
            count = lambda n: self.limits.check("completion_prompts", n, "prompts in the request")  # noqa: E731
            c = wire.completion(await self._json(request), set(self.backbones()), count)
            return await self._complete(request, details, c, chat=False)

        return await self._answer(request, GENERATE, run)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        async def run(details: CallDetails, _: grpc.RpcMethodHandler) -> web.StreamResponse:
            c = wire.chat(await self._json(request), set(self.backbones()))
            return await self._complete(request, details, c, chat=True)

        return await self._answer(request, GENERATE, run)

    async def _complete(self, request: web.Request, details: CallDetails, c: wire.Completion, chat: bool
                        ) -> web.StreamResponse:
        items = self._merged(details, c, self._peer(request))
        try:
            try:
                early = await _accepted(items, len(c.requests))
            except RpcError as exc:  # before every call was accepted: a plain HTTP error
                raise Refused.of(exc, c.model) from None
            if c.stream:
                return await self._stream(request, c, chat, early, _messages(items))
            texts: list[list[str]] = [[] for _ in c.requests]
            last: list[inf.GenerateResponse] = [inf.GenerateResponse() for _ in c.requests]
            try:
                async for i, m in prepend(early, _messages(items)):
                    texts[i].append(m.text)
                    if m.done:
                        last[i] = m
            except RpcError as exc:
                raise Refused.of(exc, c.model) from None
            choices = [_choice(chat, i, "".join(t), wire.finish(last[i].finish_reason)) for i, t in enumerate(texts)]
            return web.json_response(
                {"id": c.id, "object": "chat.completion" if chat else "text_completion", "created": c.created,
                 "model": c.model, "choices": choices, "usage": wire.usage(last)}, dumps=lambda o: dumps(o).decode())
        finally:
            await items.aclose()

    async def _stream(self, request: web.Request, c: wire.Completion, chat: bool, early: list[Indexed],
                      items: AsyncIterator[Indexed]) -> web.StreamResponse:
        """SSE, opened at once (its headers go before the first token): `data: {chunk}` per piece, a last chunk
        per choice with its finish reason, the usage when asked, then `data: [DONE]`. An error after the stream
        opened (a deadline that passes, for one) is a `data: {"error": ...}` event and no [DONE]."""
        out = web.StreamResponse(headers=SSE_HEADERS)
        await out.prepare(request)
        head = {"id": c.id, "object": "chat.completion.chunk" if chat else "text_completion", "created": c.created,
                "model": c.model}
        last: list[inf.GenerateResponse] = [inf.GenerateResponse() for _ in c.requests]
        opened: set[int] = set()
        try:
            if chat:  # the assistant's turn opens before its first piece
                await out.write(_chunk({**head, "choices": [_delta(0, {"role": "assistant", "content": ""}, None)]}))
                opened.add(0)
            async for i, m in prepend(early, items):
                if m.text:
                    choice = _delta(i, {"content": m.text}, None) if chat else _text(i, m.text, None)
                    await out.write(_chunk({**head, "choices": [choice]}))
                if m.done:
                    last[i] = m
                    reason = wire.finish(m.finish_reason)
                    choice = _delta(i, {}, reason) if chat else _text(i, "", reason)
                    await out.write(_chunk({**head, "choices": [choice]}))
            if c.include_usage:
                await out.write(_chunk({**head, "choices": [], "usage": wire.usage(last)}))
            await out.write(b"data: [DONE]\n\n")
        except RpcError as exc:
            refused_ = Refused.of(exc, c.model)
            await out.write(_chunk(wire.error_body(refused_.http_status, refused_.message, refused_.code)))
        except ConnectionResetError:  # the caller left; the calls are closed by the caller's finally
            pass
        return out

    async def models(self, request: web.Request) -> web.StreamResponse:
        async def run(details: CallDetails, handler: grpc.RpcMethodHandler) -> web.StreamResponse:
            peer = self._peer(request)
            principal = await self.auth.principal(details.invocation_metadata)
            bare = principal is not None and principal.may(BARE_BACKBONE_ROLE)
            listing = CallDetails(LIST_BACKBONES, details.invocation_metadata, details.deadline)
            backbones = await self.invoker.unary(await self.invoker.handler(listing), listing,
                                                 cat.ListBackbonesRequest(page_size=1000), peer)
            served = set(self.backbones())
            generative = [b for b in backbones.backbones
                          if b.architecture in GENERATIVE and strip_collection(b.name, "backbones") in served]
            data = []
            for b in generative:
                name = strip_collection(b.name, "backbones")
                created = b.create_time.seconds
                if bare:
                    data.append(_model(name, created, "promptbank"))
                async for p in self._prompts(handler, details, name, peer):
                    pid = strip_collection(p.name, "prompts")
                    plain = pid if pid not in served else f"{pid}@latest"  # a backbone's name means the backbone
                    data.append(_model(plain, p.create_time.seconds, p.owner or "promptbank"))
                    data += [_model(f"{pid}@{a}", p.update_time.seconds, p.owner or "promptbank")
                             for a in sorted(p.aliases) if a != "latest"]
            return web.json_response({"object": "list", "data": data}, dumps=lambda o: dumps(o).decode())

        return await self._answer(request, LIST_PROMPTS, run)

    async def _prompts(self, handler: grpc.RpcMethodHandler, details: CallDetails, backbone: str, peer: str
                       ) -> AsyncIterator[cat.Prompt]:
        token = ""
        while True:
            page: Message = await self.invoker.unary(
                handler, details, cat.ListPromptsRequest(backbone=backbone, page_size=1000, page_token=token), peer)
            assert isinstance(page, cat.ListPromptsResponse)
            for p in page.prompts:
                yield p
            token = page.next_page_token
            if not token:
                return


async def _accepted(items: AsyncIterator[Marked], calls: int) -> list[Indexed]:
    """Waits until each of `calls` calls was accepted; the messages that came meanwhile (an early choice's)."""
    early: list[Indexed] = []
    while calls:
        i, m = await anext(items)  # every call is accepted before it ends: the stream cannot end before
        if isinstance(m, Opened):
            calls -= 1
        else:
            early.append((i, m))
    return early


async def _messages(items: AsyncIterator[Marked]) -> AsyncIterator[Indexed]:
    """The choices' messages, the calls' OPENED left out."""
    async for i, m in items:
        if not isinstance(m, Opened):
            yield i, m


def _model(model_id: str, created: int, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


def _text(i: int, text: str, reason: str | None) -> dict[str, Any]:
    return {"index": i, "text": text, "logprobs": None, "finish_reason": reason}


def _delta(i: int, delta: dict[str, str], reason: str | None) -> dict[str, Any]:
    return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}


def _choice(chat: bool, i: int, text: str, reason: str | None) -> dict[str, Any]:
    if chat:
        return {"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": reason}
    return _text(i, text, reason)
