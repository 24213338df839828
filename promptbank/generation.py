"""A Generate call as the SDK returns it: an iterator of text pieces that, once drained, knows why it ended."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from promptbank.checks import INT32, INT64, integer
from promptbank.checks import text as a_string
from promptbank_api.v1 import inference_pb2 as inf

Message = tuple[str, str]  # (role, content) of a chat


@dataclass(frozen=True)
class GenerationResult:
    """A whole generation: its text, why it ended, and its token counts."""

    text: str
    finish_reason: str  # "length", "stop", "eos" or "cancelled" ("" if the server sent none)
    prompt_tokens: int  # tokens the model read before generating (a prompt's own virtual tokens excluded)
    generated_tokens: int


def finish_name(value: int) -> str:
    """FINISH_REASON_EOS -> "eos"; unspecified -> ""."""
    if value == inf.FINISH_REASON_UNSPECIFIED:
        return ""
    return inf.FinishReason.Name(value).removeprefix("FINISH_REASON_").lower()  # type: ignore[arg-type]


def request(prompt: str | None, text: str, max_new_tokens: int | None, temperature: float, seed: int,
            top_p: float | None, top_k: int | None, stop: Sequence[str] | str, backbone: str | None,
            messages: Iterable[Message] | None) -> inf.GenerateRequest:
    """The GenerateRequest of `Client.generate`'s arguments (the server checks every range; the types and the
    fields' widths are checked here, so a wrong one is named rather than reported by protobuf)."""
    text = a_string(text, "text")
    if max_new_tokens is not None:
        max_new_tokens = integer(max_new_tokens, "max_new_tokens", -INT32 - 1, INT32)
    if top_k is not None:
        top_k = integer(top_k, "top_k", -INT32 - 1, INT32)
    seed = integer(seed, "seed", -INT64 - 1, INT64)
    return inf.GenerateRequest(
        prompt=prompt or "", backbone=backbone or "", text=text, max_new_tokens=max_new_tokens,
        temperature=temperature, seed=seed, top_p=top_p, top_k=top_k, stop=[stop] if isinstance(stop, str) else stop,
        messages=[inf.ChatMessage(role=r, content=c) for r, c in messages or ()])


class Generation(Iterator[str]):
    """Generated text pieces as the server streams them (iterate, or `result()` for the whole). Once the stream
    ends, `finish_reason`, `prompt_tokens` and `generated_tokens` hold what its last message said."""

    def __init__(self, responses: Iterable[inf.GenerateResponse]):
        self._responses = iter(responses)
        self.pieces: list[str] = []
        self.finish_reason = ""
        self.prompt_tokens = self.generated_tokens = 0
        self.done = False

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        for resp in self._responses:
            if resp.done:
                self.done = True
                self.finish_reason = finish_name(resp.finish_reason)
                self.prompt_tokens, self.generated_tokens = resp.prompt_tokens, resp.generated_tokens
            if resp.text:
                self.pieces.append(resp.text)
                return resp.text
        raise StopIteration

    def result(self) -> GenerationResult:
        """Reads the rest of the stream: the whole text (pieces already taken included), reason and counts."""
        for _ in self:
            pass
        return GenerationResult("".join(self.pieces), self.finish_reason, self.prompt_tokens, self.generated_tokens)
