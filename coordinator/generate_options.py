"""Generate's request options: each range checked before a replica sees the request (INVALID_ARGUMENT naming the
field and its range), and the worker's `GeneratePiece`s turned into the API's messages."""

from __future__ import annotations

import math
from dataclasses import dataclass

from coordinator.limits import Limits
from promptbank_api.errors import InvalidArgument
from promptbank_api.names import check_name, strip_collection
from promptbank_api.v1 import inference_pb2 as inf
from workers.protocol import GeneratePiece, GenerateRequest

MAX_NEW_TOKENS = 512
DEFAULT_NEW_TOKENS = 32
MAX_TEMPERATURE = 100.0
MAX_TOP_K = 1000
MAX_STOPS = 4
MAX_STOP_CHARS = 64
FINISH = {  # the worker's finish reasons -> the API's
    "length": inf.FINISH_REASON_LENGTH, "stop": inf.FINISH_REASON_STOP, "eos": inf.FINISH_REASON_EOS,
    "cancelled": inf.FINISH_REASON_CANCELLED,
}


@dataclass(frozen=True)
class Options:
    """How to sample, checked."""

    max_new_tokens: int
    temperature: float
    seed: int
    top_p: float
    top_k: int
    stop: tuple[str, ...]


def options(request: inf.GenerateRequest) -> Options:
    """The request's sampling options, each in its range."""
    max_new = request.max_new_tokens if request.HasField("max_new_tokens") else DEFAULT_NEW_TOKENS
    if not 1 <= max_new <= MAX_NEW_TOKENS:
        raise InvalidArgument(f"max_new_tokens={max_new} must be in 1..{MAX_NEW_TOKENS}")
    if not 0 <= request.temperature <= MAX_TEMPERATURE:  # NaN fails both comparisons: refused too
        raise InvalidArgument(f"temperature={request.temperature} must be a number in [0, {MAX_TEMPERATURE}] "
                              f"(0 = greedy)")
    top_p = request.top_p if request.HasField("top_p") else 1.0
    if not (0 < top_p <= 1 and math.isfinite(top_p)):
        raise InvalidArgument(f"top_p={top_p} must be a number in (0, 1] (1 = off)")
    top_k = request.top_k if request.HasField("top_k") else 0
    if not 0 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(f"top_k={top_k} must be in 0..{MAX_TOP_K} (0 = off)")
    if len(request.stop) > MAX_STOPS:
        raise InvalidArgument(f"stop has {len(request.stop)} strings; at most {MAX_STOPS}")
    for i, s in enumerate(request.stop):
        if not 1 <= len(s) <= MAX_STOP_CHARS:
            raise InvalidArgument(f"stop[{i}] has {len(s)} characters; each stop string has 1..{MAX_STOP_CHARS}")
    return Options(max_new, request.temperature, request.seed, top_p, top_k, tuple(request.stop))


def backbone_name(request: inf.GenerateRequest) -> str:
    """The backbone of a request without a prompt ("" when it names a prompt); exactly one of the two is set."""
    if bool(request.prompt) == bool(request.backbone):
        raise InvalidArgument("set exactly one of prompt (a prompt reference) and backbone (generate with the "
                              "backbone alone)" + ("; both are set" if request.prompt else ""))
    return check_name("backbone", strip_collection(request.backbone, "backbones")) if request.backbone else ""


def chat(request: inf.GenerateRequest, limits: Limits) -> list[tuple[str, str]]:
    """The request's chat messages as (role, content), within the limits ([] for a text request); exactly one of
    `text` and `messages` is set."""
    if bool(request.text) == bool(request.messages):
        raise InvalidArgument("set exactly one of text (the text to continue) and messages (a chat)"
                              + ("; both are set" if request.text else ""))
    if not request.messages:
        if not request.text.strip():
            raise InvalidArgument("text is empty")
        limits.check_text(request.text, "text")
        return []
    limits.check("chat_messages", len(request.messages), "messages in the chat")
    for i, m in enumerate(request.messages):
        if not m.role:
            raise InvalidArgument(f"messages[{i}].role is empty: use system, user or assistant")
        limits.check_chars("field_chars", m.role, f"messages[{i}].role")
    limits.check("text_chars", sum(len(m.content) for m in request.messages), "the messages' contents: characters")
    return [(m.role, m.content) for m in request.messages]


def worker_request(key: str, prompts: dict[str, bytes], text: str, o: Options) -> GenerateRequest:
    """What the replica runs: one row (key "" = the backbone alone). Its id to cancel it by is given by
    `pool.generate` (coordinator/generation.py `unique_id`), which every Generate path goes through."""
    return GenerateRequest(key, prompts, text, o.max_new_tokens, o.temperature, o.seed, o.top_p, o.top_k, o.stop)


def last_message(piece: GeneratePiece | None) -> inf.GenerateResponse:
    """The stream's last message: the finish reason and counts of the replica's last piece."""
    if piece is None or piece.finish_reason is None:
        return inf.GenerateResponse(done=True)
    return inf.GenerateResponse(done=True, finish_reason=FINISH.get(piece.finish_reason, inf.FINISH_REASON_UNSPECIFIED),
                                prompt_tokens=piece.prompt_tokens, generated_tokens=piece.generated_tokens)
