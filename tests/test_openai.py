"""The OpenAI-compatible face through the official `openai` client against a real coordinator (loopback, real Ray,
SQLite; the shared REST server): completions streamed and not, lists of prompts, chat through the backbone's chat
template, the models a caller may use, and OpenAI's errors for bad tokens, roles, unknown models and limits."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import requests
from transformers import AutoTokenizer

from tests.rest_fixtures import RestStack

TEXT = "once upon a time"


def oai(stack: RestStack, role: str = "reader", token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}v1", api_key=token or stack.tokens[role], max_retries=0, timeout=120)


def post(stack: RestStack, path: str, body: dict[str, Any], role: str = "reader") -> requests.Response:
    return requests.post(f"{stack.url}v1/{path}", json=body, timeout=120,
                         headers={"Authorization": f"Bearer {stack.tokens[role]}"})


def test_a_completion_streamed_equals_it_unstreamed_and_the_sdk_under_greedy(rest_stack: RestStack) -> None:
    c = oai(rest_stack)  # a reader may complete under a prompt
    done = c.completions.create(model=rest_stack.lm_prompt, prompt=TEXT, max_tokens=6, temperature=0)
    choice = done.choices[0]
    assert done.object == "text_completion" and done.model == rest_stack.lm_prompt and choice.index == 0
    assert choice.text.strip() and choice.finish_reason in ("length", "stop")
    with rest_stack.client() as sdk:
        same = sdk.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=6)
    assert choice.text == same.text  # one Generate path under both faces
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (same.prompt_tokens, same.generated_tokens)
    assert done.usage.total_tokens == same.prompt_tokens + same.generated_tokens and same.prompt_tokens > 0
    if choice.finish_reason == "length":
        assert done.usage.completion_tokens == 6

    chunks = list(c.completions.create(model=rest_stack.lm_prompt, prompt=TEXT, max_tokens=6, temperature=0,
                                       stream=True, stream_options={"include_usage": True}))
    pieces = [ch.choices[0].text for ch in chunks if ch.choices]
    assert len([p for p in pieces if p]) >= 2, "the text came in one piece: not streamed"
    assert "".join(pieces) == choice.text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == choice.finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == done.usage.total_tokens


def test_a_list_of_prompts_gives_one_indexed_choice_each(rest_stack: RestStack) -> None:
    c = oai(rest_stack)
    texts = [TEXT, "the weather today is", "hello"]
    many = c.completions.create(model=rest_stack.lm_prompt, prompt=texts, max_tokens=4, temperature=0)
    assert [ch.index for ch in many.choices] == [0, 1, 2]
    alone = [c.completions.create(model=rest_stack.lm_prompt, prompt=t, max_tokens=4, temperature=0) for t in texts]
    assert [ch.text for ch in many.choices] == [a.choices[0].text for a in alone]
    assert many.usage is not None
    assert many.usage.total_tokens == sum(a.usage.total_tokens for a in alone if a.usage is not None)
    streamed: dict[int, str] = {}
    for chunk in c.completions.create(model=rest_stack.lm_prompt, prompt=texts, max_tokens=4, temperature=0,
                                      stream=True):
        for ch in chunk.choices:
            streamed[ch.index] = streamed.get(ch.index, "") + ch.text
    assert streamed == {i: ch.text for i, ch in enumerate(many.choices)}


def test_chat_renders_the_backbones_chat_template(rest_stack: RestStack) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "tell me a story"}]
    c = oai(rest_stack)
    done = c.chat.completions.create(model=rest_stack.chat_prompt, messages=messages,  # type: ignore[arg-type]
                                     max_tokens=5, temperature=0)
    reply = done.choices[0].message
    assert done.object == "chat.completion" and reply.role == "assistant" and reply.content
    # the text the tokenizer's own apply_chat_template gives, generated as plain text, is the same generation
    rendered = AutoTokenizer.from_pretrained(rest_stack.chat_model).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
    assert isinstance(rendered, str) and rendered.endswith("<assistant>")
    with rest_stack.client() as sdk:
        same = sdk.generate_full(rest_stack.chat_prompt, rendered, max_new_tokens=5)
        other = sdk.generate_full(rest_stack.chat_prompt, "tell me a story", max_new_tokens=5)
    assert reply.content == same.text and other.text != same.text, "the chat template was not applied"
    assert done.usage is not None and done.usage.prompt_tokens == same.prompt_tokens
    chunks = list(c.chat.completions.create(model=rest_stack.chat_prompt, messages=messages,  # type: ignore[arg-type]
                                            max_tokens=5, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == reply.content
    assert chunks[-1].choices[0].finish_reason == done.choices[0].finish_reason


def test_chat_without_a_template_and_a_role_the_template_refuses_are_400(rest_stack: RestStack) -> None:
    c = oai(rest_stack)
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model=rest_stack.lm_prompt, messages=[{"role": "user", "content": "hi"}])
    assert "no chat template" in str(err.value) and "'lm'" in str(err.value)
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model=rest_stack.chat_prompt,
                                  messages=[{"role": "tool", "content": "x"}])  # type: ignore[list-item]
    assert "unknown role tool" in str(err.value)


def test_models_lists_what_the_caller_may_use(rest_stack: RestStack) -> None:
    reader = {m.id for m in oai(rest_stack).models.list()}
    assert {rest_stack.lm_prompt, rest_stack.chat_prompt} <= reader
    assert "rest-sentiment" not in reader and "rest-sentiment@prod" not in reader  # an encoder does not generate
    assert not reader & {"lm", "chat", "enc"}, "a reader may not generate with a backbone alone"
    trainer = {m.id for m in oai(rest_stack, "trainer").models.list()}
    assert {"lm", "chat"} <= trainer and "enc" not in trainer and reader <= trainer
    for model_id in reader:  # every listed id is a model the caller can complete with
        assert oai(rest_stack).completions.create(model=model_id, prompt="hi", max_tokens=1).choices


def test_errors_come_in_openais_shape_with_their_http_status(rest_stack: RestStack) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        oai(rest_stack, token="pbt_not-a-token").completions.create(model=rest_stack.lm_prompt, prompt="hi")
    assert auth.value.status_code == 401 and "token" in auth.value.message
    with pytest.raises(openai.AuthenticationError):
        oai(rest_stack, token="pbt_not-a-token").models.list()
    c = oai(rest_stack)
    with pytest.raises(openai.NotFoundError) as missing:
        c.completions.create(model="no-such-task", prompt="hi")
    assert "no-such-task" in missing.value.message and missing.value.code == "model_not_found"
    with pytest.raises(openai.PermissionDeniedError) as role:  # a reader generates only under prompts
        c.completions.create(model="lm", prompt="hi")
    assert "trainer role" in role.value.message
    with pytest.raises(openai.BadRequestError) as unsupported:
        c.completions.create(model=rest_stack.lm_prompt, prompt="hi", n=2, logprobs=2, echo=True)
    assert all(name in unsupported.value.message for name in ("n=2", "logprobs", "echo"))
    ok = c.completions.create(model=rest_stack.lm_prompt, prompt="hi", max_tokens=1, n=1, presence_penalty=0)
    assert ok.choices  # neutral values of unsupported fields are accepted
    with pytest.raises(openai.BadRequestError) as range_:
        c.completions.create(model=rest_stack.lm_prompt, prompt="hi", max_tokens=100_000)
    assert "max_tokens=100000" in range_.value.message
    with pytest.raises(openai.BadRequestError) as top_p:
        c.completions.create(model=rest_stack.lm_prompt, prompt="hi", top_p=0)
    assert "top_p" in top_p.value.message
    body = post(rest_stack, "completions", {"model": rest_stack.lm_prompt, "prompt": "hi", "echo": True})
    assert body.status_code == 400 and set(body.json()["error"]) >= {"message", "type", "code"}
    assert body.json()["error"]["type"] == "invalid_request_error"


def test_over_a_limit_is_429(rest_stack: RestStack) -> None:
    c = oai(rest_stack)
    with pytest.raises(openai.RateLimitError) as long:  # the shared server allows 500 characters per text
        c.completions.create(model=rest_stack.lm_prompt, prompt="x" * 501, max_tokens=1)
    assert "--limit-text-chars" in long.value.message
    with pytest.raises(openai.RateLimitError) as many:
        c.completions.create(model=rest_stack.lm_prompt, prompt=["hi"] * 17, max_tokens=1)
    assert "--limit-completion-prompts" in many.value.message
    too_big = post(rest_stack, "completions", {"model": rest_stack.lm_prompt, "prompt": "x" * (5 << 20)})
    assert too_big.status_code == 413 and "--limit-rest-body-bytes" in too_big.json()["error"]["message"]
