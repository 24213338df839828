"""OpenAI's JSON, both ways: a `/v1/completions` or `/v1/chat/completions` body checked and turned into Generate
requests, and Generate's messages turned into OpenAI's completion objects, stream chunks and errors.

Nothing here runs a call (coordinator/rest/openai_face.py does, through the same interceptors as every RPC); the
ranges are Generate's own, checked by the service. Fields OpenAI has and Generate lacks are refused by name,
unless they hold their neutral value (`n: 1`, `echo: false`, `presence_penalty: 0`, ...), which some clients
always send.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from coordinator.rest.status import HTTP_STATUS
from promptbank_api.errors import InvalidArgument
from promptbank_api.v1 import inference_pb2 as inf

COMMON = frozenset({"model", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "stream",
                    "stream_options", "n", "user"})
COMPLETION_FIELDS = COMMON | {"prompt"}
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens"}
NEUTRAL: dict[str, tuple[Any, ...]] = {  # unsupported fields accepted only at these values (what "off" means)
    "n": (1,), "best_of": (1,), "echo": (False,), "logprobs": (None, False), "top_logprobs": (None, 0),
    "suffix": (None, ""), "presence_penalty": (0, None), "frequency_penalty": (0, None), "logit_bias": (None, {}),
    "tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}), "parallel_tool_calls": (None,),
}
OPENAI_FINISH = {  # Generate's finish reasons -> OpenAI's; a cancelled one as vLLM reports an aborted request
    inf.FINISH_REASON_LENGTH: "length", inf.FINISH_REASON_STOP: "stop", inf.FINISH_REASON_EOS: "stop",
    inf.FINISH_REASON_CANCELLED: "abort",
}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "invalid_request_error", 415: "invalid_request_error",
               429: "limit_error", 504: "timeout_error"}


@dataclass(frozen=True)
class Completion:
    """A checked request: one Generate request per choice, and how to answer."""

    model: str
    requests: list[inf.GenerateRequest]
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage
    id: str = field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def _refuse_unsupported(body: dict[str, Any], allowed: frozenset[str]) -> None:
    bad = []
    for name, value in body.items():
        if name in allowed and not (name == "n" and value != 1 and value is not None):
            continue
        if name in NEUTRAL and value in NEUTRAL[name]:
            continue
        bad.append(f"n={value!r} (only n=1: one choice per prompt)" if name == "n" else name)
    if bad:
        raise InvalidArgument(f"unsupported field(s): {', '.join(bad)}; see docs/openai.md for what is supported")


def _number(body: dict[str, Any], name: str, integer: bool = False) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidArgument(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
    return value


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidArgument("stop must be a string or a list of strings")
    return stops


def target(model: Any, backbones: set[str]) -> dict[str, Any]:
    """Which Generate field `model` fills: a served backbone's name (or `backbones/NAME`) runs the backbone alone;
    anything else is a prompt reference (`story`, `story@prod`, `story/versions/3`, `prompts/story`)."""
    if not isinstance(model, str) or not model:
        raise InvalidArgument("model is required: a prompt reference (story, story@prod, story/versions/3) or a "
                              "backbone name")
    return {"backbone": model} if model.startswith("backbones/") or model in backbones else {"prompt": model}


def sampling(body: dict[str, Any], max_tokens: str = "max_tokens") -> dict[str, Any]:
    """GenerateRequest's sampling fields from OpenAI's. OpenAI samples at temperature 1 by default, with a fresh
    seed each call; so does this face (temperature 0 is greedy)."""
    out: dict[str, Any] = {"stop": _stops(body.get("stop"))}
    temperature = _number(body, "temperature")
    out["temperature"] = 1.0 if temperature is None else float(temperature)
    seed = _number(body, "seed", integer=True)
    out["seed"] = secrets.randbits(63) if seed is None else seed
    for name, proto in ((max_tokens, "max_new_tokens"), ("top_k", "top_k")):
        value = _number(body, name, integer=True)
        if value is not None:
            out[proto] = value
    top_p = _number(body, "top_p")
    if top_p is not None:
        out["top_p"] = float(top_p)
    return out


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream, options = body.get("stream") or False, body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise InvalidArgument("stream must be true or false, stream_options an object")
    return stream, bool(options.get("include_usage"))


def completion(body: Any, backbones: set[str], check_count: Callable[[int], None]) -> Completion:
    """A `/v1/completions` body: one Generate request per prompt of `prompt` (a string or a list of them)."""
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    _refuse_unsupported(body, COMPLETION_FIELDS)
    prompts = body.get("prompt")
    prompts = [prompts] if isinstance(prompts, str) else prompts
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise InvalidArgument("prompt must be a string or a non-empty list of strings (token ids are not accepted)")
    check_count(len(prompts))
    where, options = target(body.get("model"), backbones), sampling(body)
    stream, usage = _stream_flags(body)
    return Completion(body["model"], [inf.GenerateRequest(text=p, **where, **options) for p in prompts], stream, usage)


def _content(message: Any, i: int) -> tuple[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidArgument(f"messages[{i}] must be an object with a role and a content")
    content = message.get("content")
    if isinstance(content, list):  # content parts: text only
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise InvalidArgument(f"messages[{i}].content: only text parts are supported")
        content = "".join(p["text"] for p in content)
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise InvalidArgument(f"messages[{i}].content must be a string or a list of text parts")
    return message["role"], content


def chat(body: Any, backbones: set[str]) -> Completion:
    """A `/v1/chat/completions` body: one Generate request with the chat as `messages`."""
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    _refuse_unsupported(body, CHAT_FIELDS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidArgument("messages must be a non-empty list of {role, content} objects")
    chat_messages = [inf.ChatMessage(role=r, content=c) for r, c in (_content(m, i) for i, m in enumerate(messages))]
    field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    where, options = target(body.get("model"), backbones), sampling(body, field)
    stream, usage = _stream_flags(body)
    return Completion(body["model"], [inf.GenerateRequest(messages=chat_messages, **where, **options)], stream, usage,
                      id=f"chatcmpl-{uuid.uuid4().hex}")


def finish(reason: int) -> str | None:
    found: str | None = OPENAI_FINISH.get(reason)  # type: ignore[call-overload]  # keyed by the enum's ints
    return found


def usage(last: list[inf.GenerateResponse]) -> dict[str, int]:
    prompt, generated = sum(m.prompt_tokens for m in last), sum(m.generated_tokens for m in last)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def error_body(http_status: int, message: str, code: grpc.StatusCode | str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object; `code` is the gRPC status in lower case (`invalid_argument`, ...) or OpenAI's own."""
    name = code if isinstance(code, str) else code.name.lower()
    kind = ERROR_TYPES.get(http_status, "server_error" if http_status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": name, "param": param}}


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)
