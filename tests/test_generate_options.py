"""The sampling options' meaning, end to end on the shared REST server: a stop string ends the output before it
(finish reason `stop`), top-k 1 and a vanishing top-p decode greedily whatever the temperature, and a backbone
alone (a bare row, no prompt) generates through gRPC and the OpenAI face. The replica implements these (its
decode loop); tests/test_generate_api.py covers what the coordinator checks and forwards."""

from __future__ import annotations

import openai

from tests.rest_fixtures import RestStack

TEXT = "once upon a time"


def test_a_stop_string_ends_the_output_before_it(rest_stack: RestStack) -> None:
    with rest_stack.client("reader") as c:
        full = c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=12)
        assert len(full.text) > 4, full
        stop = full.text[len(full.text) // 2:][:3]  # three characters from its second half
        cut = c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=12, stop=[stop, "never-generated"])
    assert cut.text == full.text[:full.text.index(stop)] and cut.finish_reason == "stop"
    assert cut.generated_tokens < full.generated_tokens
    done = openai.OpenAI(base_url=f"{rest_stack.url}v1", api_key=rest_stack.tokens["reader"], max_retries=0) \
        .completions.create(model=rest_stack.lm_prompt, prompt=TEXT, max_tokens=12, temperature=0, stop=stop)
    assert done.choices[0].text == cut.text and done.choices[0].finish_reason == "stop"


def test_top_k_one_and_a_vanishing_top_p_decode_greedily(rest_stack: RestStack) -> None:
    with rest_stack.client("reader") as c:
        greedy = c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=8).text
        hot = {c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=8, temperature=5.0, seed=s).text
               for s in range(3)}
        assert greedy not in hot and len(hot) == 3  # near-uniform sampling over 30k tokens
        for seed in range(3):
            assert c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=8, temperature=5.0, seed=seed,
                                   top_k=1).text == greedy
            assert c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=8, temperature=5.0, seed=seed,
                                   top_p=1e-9).text == greedy
        wide = {c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=8, temperature=5.0, seed=s,
                                top_k=1000).text for s in range(3)}
        assert len(wide) == 3  # a top-k that keeps many tokens still samples


def test_a_backbone_alone_generates_for_a_trainer(rest_stack: RestStack) -> None:
    with rest_stack.client("trainer") as c:
        bare = c.generate_full(None, TEXT, max_new_tokens=6, backbone="lm")
        again = c.generate_full(None, TEXT, max_new_tokens=6, backbone="backbones/lm")
        prompted = c.generate_full(rest_stack.lm_prompt, TEXT, max_new_tokens=6)
    assert bare.text and bare == again and bare.text != prompted.text
    assert bare.prompt_tokens == prompted.prompt_tokens  # the text's tokens either way
    client = openai.OpenAI(base_url=f"{rest_stack.url}v1", api_key=rest_stack.tokens["trainer"], max_retries=0)
    done = client.completions.create(model="lm", prompt=TEXT, max_tokens=6, temperature=0)
    assert done.choices[0].text == bare.text
    chat = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                          temperature=0)
    assert chat.choices[0].message.content
