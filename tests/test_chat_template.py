"""Chat templates rendered by the coordinator without a tokenizer (coordinator/chat.py) give the text
transformers' `apply_chat_template` gives, read from a model's files however they store the template; a template
cannot reach past Jinja's sandbox; a model without one has none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from coordinator.chat import ChatTemplates, from_files, read_files
from coordinator.config import packaged_minilm
from promptbank_api.errors import FailedPrecondition, InvalidArgument

CHAT = [("system", "You are terse."), ("user", "  What is 2+2? "), ("assistant", "4"), ("user", "And 3+3?")]
TEMPLATES = {
    # ChatML, as many instruct models ship it
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
              "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
              "{% endif %}",
    # the constructs real templates use: special tokens, namespace, loop controls, tojson, trim, generation tags
    "features": "{{ cls_token }}{% set ns = namespace(system='') %}{% for m in messages %}"
                "{% if m.role == 'system' %}{% set ns.system = m.content %}{% continue %}{% endif %}"
                "{% if loop.index0 > 8 %}{% break %}{% endif %}"
                "[{{ m.role | upper }}|{{ ns.system | tojson }}] "
                "{% if m.role == 'assistant' %}{% generation %}{{ m.content | trim }}{% endgeneration %}"
                "{% else %}{{ m.content | trim }}{% endif %}{{ sep_token }}\n{% endfor %}"
                "{% if add_generation_prompt %}[ASSISTANT]{% endif %}",
}


def saved(tmp_path: Path, template: str) -> Path:
    tok = AutoTokenizer.from_pretrained(packaged_minilm())
    tok.chat_template = template
    tok.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_rendering_equals_apply_chat_template(tmp_path: Path, name: str) -> None:
    path = saved(tmp_path, TEMPLATES[name])
    template = from_files(read_files(str(path)))
    assert template is not None and template.tokens["sep_token"] == "[SEP]"
    expected = AutoTokenizer.from_pretrained(path).apply_chat_template(
        [{"role": r, "content": c} for r, c in CHAT], tokenize=False, add_generation_prompt=True)
    assert template.render(CHAT) == expected


def test_a_template_in_tokenizer_config_or_chat_template_json_is_found(tmp_path: Path) -> None:
    config = {"eos_token": {"content": "</s>", "lstrip": False}, "bos_token": "<s>",
              "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                                {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    template = from_files(read_files(str(tmp_path)))
    assert template is not None and template.render([("user", "hi")]) == "<s>hi</s>"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "J:{{ messages[0].content }}"}))
    template = from_files(read_files(str(tmp_path)))
    assert template is not None and template.render([("user", "hi")]) == "J:hi"  # as transformers prefers it


def test_a_model_without_a_template_has_none(tmp_path: Path) -> None:
    assert from_files(read_files(packaged_minilm())) is None
    assert from_files(read_files(str(tmp_path / "missing"))) is None  # not a directory: the (empty) hub cache
    assert from_files({"tokenizer_config.json": "{not json"}) is None


def test_the_sandbox_holds_and_a_template_refusal_is_invalid_argument(tmp_path: Path) -> None:
    escape = from_files({"chat_template.jinja": "{{ messages.__class__.__mro__ }}"})
    assert escape is not None
    with pytest.raises(FailedPrecondition, match="outside its sandbox.*__class__"):
        escape.render([("user", "hi")])
    poke = from_files({"chat_template.jinja": "{% set ns = namespace(_x=1) %}{{ ns._x }}"})
    assert poke is not None
    with pytest.raises(FailedPrecondition, match="_x"):
        poke.render([("user", "hi")])
    refusing = from_files({"chat_template.jinja": "{{ raise_exception('roles must alternate') }}"})
    assert refusing is not None
    with pytest.raises(InvalidArgument, match="roles must alternate"):
        refusing.render([("user", "hi")])
    broken = from_files({"chat_template.jinja": "{% for %}"})
    assert broken is not None
    with pytest.raises(FailedPrecondition, match="does not compile"):
        broken.render([("user", "hi")])


def test_templates_are_read_once_per_model(tmp_path: Path) -> None:
    path = saved(tmp_path, TEMPLATES["chatml"])
    templates = ChatTemplates()
    first = asyncio.run(templates.get(str(path)))
    (path / "chat_template.jinja").write_text("changed")
    assert first is not None and asyncio.run(templates.get(str(path))) is first
