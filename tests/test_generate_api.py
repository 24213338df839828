"""Generate's request options on the wire, on the shared REST server (real coordinator, Ray, SQLite; tokens on):
every range refused as INVALID_ARGUMENT naming its field, exactly one of prompt/backbone and text/messages, the
role a backbone alone needs, a chat through the backbone's chat template, the last message's finish reason and
counts, and the SDK, CLI and REST faces of all of it. What depends on the replica's sampling (stop strings, top-k,
bare rows) is in tests/test_generate_options.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import grpc
import pytest
import requests
from transformers import AutoTokenizer

from promptbank import Client, Generation
from promptbank_api.v1 import inference_pb2 as inf
from tests.rest_fixtures import RestStack
from tests.test_server import code_of

TEXT = "once upon a time"
CHAT = [("system", "be brief"), ("user", "tell me a story")]


@pytest.mark.parametrize("options, field", [
    ({"max_new_tokens": 0}, "max_new_tokens=0"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0.0}, "top_p=0.0"),
    ({"top_p": 1.5}, "top_p=1.5"),
    ({"top_p": float("nan")}, "top_p"),
    ({"top_k": -1}, "top_k=-1"),
    ({"top_k": 1001}, "top_k=1001"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
    ({"stop": [""]}, "stop[0]"),
    ({"stop": ["x" * 65]}, "stop[0] has 65 characters"),
])
def test_each_option_out_of_range_is_invalid_argument_naming_it(rest_stack: RestStack, options: dict[str, Any],
                                                               field: str) -> None:
    with rest_stack.client("reader") as c:
        code, msg = code_of(lambda: list(c.generate(rest_stack.lm_prompt, TEXT, **options)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in msg, msg


def test_exactly_one_source_and_one_input(rest_stack: RestStack) -> None:
    with rest_stack.client() as c:
        code, msg = code_of(lambda: list(c.generate(rest_stack.lm_prompt, TEXT, backbone="lm")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "exactly one of prompt" in msg and "both" in msg
        code, msg = code_of(lambda: list(c.generate(None, TEXT)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "exactly one of prompt" in msg
        code, msg = code_of(lambda: list(c.generate(rest_stack.chat_prompt, TEXT, messages=CHAT)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "exactly one of text" in msg
        code, msg = code_of(lambda: list(c.generate(rest_stack.lm_prompt, "   ")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "text is empty" in msg
        code, msg = code_of(lambda: list(c.generate(None, TEXT, backbone="no-such-backbone")))
        assert code == grpc.StatusCode.NOT_FOUND and "no-such-backbone" in msg and "lm" in msg
        code, msg = code_of(lambda: list(c.generate(None, TEXT, backbone="enc")))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "cannot generate" in msg


def test_a_backbone_alone_needs_the_trainer_role(rest_stack: RestStack) -> None:
    with rest_stack.client("reader") as c:
        for name in ("lm", "backbones/lm"):
            code, msg = code_of(lambda name=name: list(c.generate(None, TEXT, backbone=name)))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "trainer role" in msg and "reader" in msg
        assert "".join(c.generate(rest_stack.lm_prompt, TEXT, max_new_tokens=2))  # under a prompt it may


def test_the_last_message_carries_the_finish_reason_and_counts(rest_stack: RestStack) -> None:
    with rest_stack.client("reader") as c:
        responses = list(c.inference.Generate(inf.GenerateRequest(prompt=rest_stack.lm_prompt, text=TEXT,
                                                                   max_new_tokens=4), timeout=60))
        gen = c.generate(rest_stack.lm_prompt, TEXT, max_new_tokens=4)
        assert gen.finish_reason == "" and isinstance(gen, Generation)
        pieces = list(gen)  # the iterator of str still works
        whole = c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=4)
    last = responses[-1]
    assert last.done and not any(r.done for r in responses[:-1])
    assert all(r.finish_reason == inf.FINISH_REASON_UNSPECIFIED for r in responses[:-1])
    assert last.finish_reason in (inf.FINISH_REASON_LENGTH, inf.FINISH_REASON_EOS)
    if last.finish_reason == inf.FINISH_REASON_LENGTH:
        assert last.generated_tokens == 4
    tokenizer = AutoTokenizer.from_pretrained(rest_stack.chat_model)
    assert last.prompt_tokens == len(tokenizer(TEXT)["input_ids"])  # the text's tokens; the prompt's own excluded
    assert gen.finish_reason == whole.finish_reason == inf.FinishReason.Name(last.finish_reason)[14:].lower()
    assert (gen.prompt_tokens, gen.generated_tokens) == (last.prompt_tokens, last.generated_tokens)
    assert "".join(pieces) == whole.text == "".join(r.text for r in responses) and whole.text
    assert (whole.prompt_tokens, whole.generated_tokens) == (last.prompt_tokens, last.generated_tokens)


def test_a_chat_is_rendered_with_the_backbones_template(rest_stack: RestStack) -> None:
    rendered = AutoTokenizer.from_pretrained(rest_stack.chat_model).apply_chat_template(
        [{"role": r, "content": t} for r, t in CHAT], tokenize=False, add_generation_prompt=True)
    with rest_stack.client("reader") as c:
        chat = c.generate_full(rest_stack.chat_prompt, messages=CHAT, max_new_tokens=4)
        text = c.generate_full(rest_stack.chat_prompt, str(rendered), max_new_tokens=4)
        assert chat == text and chat.text
        code, msg = code_of(lambda: list(c.generate(rest_stack.lm_prompt, messages=CHAT)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no chat template" in msg
        code, msg = code_of(lambda: list(c.generate(rest_stack.chat_prompt, messages=[("", "hi")])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "messages[0].role" in msg
        code, msg = code_of(lambda: list(c.generate(rest_stack.chat_prompt, messages=[("user", "x" * 300)] * 2)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--limit-text-chars" in msg
        code, msg = code_of(lambda: list(c.generate(rest_stack.chat_prompt, messages=[("user", "")] * 257)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--limit-chat-messages" in msg


def test_rest_streams_the_options_and_the_last_messages_fields(rest_stack: RestStack) -> None:
    body = {"prompt": rest_stack.lm_prompt, "text": TEXT, "maxNewTokens": 3, "topP": 0.9, "topK": 5,
            "stop": ["zzz"], "temperature": 0}
    resp = requests.post(f"{rest_stack.url}v1/prompts:generate", json=body, stream=True, timeout=60,
                         headers={"Authorization": f"Bearer {rest_stack.tokens['reader']}"})
    data = [json.loads(line[6:]) for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    last = [d for d in data if d.get("done")]
    assert resp.status_code == 200 and len(last) == 1
    assert last[0]["finishReason"] in ("FINISH_REASON_LENGTH", "FINISH_REASON_EOS", "FINISH_REASON_STOP")
    assert last[0]["promptTokens"] > 0
    bad = requests.post(f"{rest_stack.url}v1/prompts:generate", json={**body, "topK": 5000}, timeout=60,
                        headers={"Authorization": f"Bearer {rest_stack.tokens['reader']}"})
    assert bad.status_code == 400 and "top_k=5000" in bad.json()["message"]


def test_the_cli_takes_the_options_and_reports_the_finish(rest_stack: RestStack) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PROMPTBANK_TOKEN": rest_stack.tokens["reader"]}
        return subprocess.run([sys.executable, "-m", "promptbank.cli", "--server", rest_stack.live.address,
                               "generate", *args], capture_output=True, text=True, timeout=300, env=env)

    with Client(rest_stack.live.address, token=rest_stack.tokens["reader"]) as c:
        expected = c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=4, top_p=0.5, top_k=3, stop=["zzz"])
    out = cli("--prompt", rest_stack.lm_prompt, "--max-new-tokens", "4", "--top-p", "0.5", "--top-k", "3",
              "--stop", "zzz", "--usage", TEXT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected.text + "\n"
    assert (f"finish_reason={expected.finish_reason} prompt_tokens={expected.prompt_tokens} "
            f"generated_tokens={expected.generated_tokens}") in out.stderr
    bad = cli("--prompt", rest_stack.lm_prompt, "--top-k", "-2", "hi")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "top_k=-2" in bad.stderr
    denied = cli("--backbone", "lm", "hi")
    assert denied.returncode != 0 and "PERMISSION_DENIED" in denied.stderr and "trainer role" in denied.stderr
