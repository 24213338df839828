"""Chat templates: a backbone's tokenizer's Jinja template, read as data from its model files and rendered here.

The coordinator loads no model and no tokenizer. A chat template is only text in the model's files
(`chat_template.jinja`, `chat_template.json`, or `tokenizer_config.json`'s `chat_template`), with the special
tokens it may print; rendering it needs Jinja, not the tokenizer. It runs in Jinja's immutable sandbox with what
transformers' `apply_chat_template` offers a template (`raise_exception`, `strftime_now`, a JSON `tojson`, loop
controls, the `generation` tag), so a chat renders to the text `apply_chat_template(..., tokenize=False,
add_generation_prompt=True)` gives, and the replica tokenizes it like any Generate text. A local model is read
from its directory; a hub model from the local Hugging Face cache (never downloaded here).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from promptbank_api.errors import FailedPrecondition, InvalidArgument

FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json", "special_tokens_map.json")
SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
MAX_FILE_BYTES = 16 << 20  # a tokenizer_config.json with every added token listed stays far below this


class _Generation(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; rendering keeps it as is."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _Namespace(jinja2.utils.Namespace):
    """`namespace(...)` without underscore-prefixed attributes (no way to CPython's internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - Jinja's Namespace signature trick
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a chat template may not set {name!r} on a namespace")


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.now().strftime(fmt),
                       namespace=_Namespace)
    return env


@dataclass(frozen=True)
class ChatTemplate:
    """A tokenizer's chat template and the special tokens (`bos_token`, ...) it may print."""

    source: str
    tokens: dict[str, str] = field(default_factory=dict)

    @cached_property
    def compiled(self) -> jinja2.Template:
        try:
            return _environment().from_string(self.source)
        except jinja2.TemplateError as exc:
            raise FailedPrecondition(f"the backbone's chat template does not compile: {exc}") from None

    def render(self, messages: Sequence[tuple[str, str]]) -> str:
        """The chat as text, the assistant's turn opened (`add_generation_prompt`)."""
        chat = [{"role": role, "content": content} for role, content in messages]
        try:
            return self.compiled.render(messages=chat, add_generation_prompt=True, tools=None, documents=None,
                                        **self.tokens)
        except jinja2.exceptions.SecurityError as exc:  # the template's own fault, whatever the chat
            raise FailedPrecondition(f"the backbone's chat template reached outside its sandbox: {exc}") from None
        except jinja2.TemplateError as exc:  # raise_exception(...) of the template: it refuses this chat
            raise InvalidArgument(f"the backbone's chat template refused the messages: {exc}") from None


def _read(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
        return None
    return path.read_text(encoding="utf-8")


def _token(value: Any) -> str | None:
    """A special token as tokenizer files write it: a string, or an AddedToken's dict with its `content`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _pick(template: Any) -> str | None:
    """`chat_template` as stored: one template, or a list of named ones (the `default` is used)."""
    if isinstance(template, str):
        return template
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        found = named.get("default")
        return found if isinstance(found, str) else None
    return None


def from_files(files: dict[str, str]) -> ChatTemplate | None:
    """The chat template in a tokenizer's files (file name -> text), as transformers would find it; None: none."""
    def load(name: str) -> dict[str, Any]:
        try:
            data = json.loads(files.get(name) or "{}")
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}

    config = load("tokenizer_config.json")
    source = files.get("chat_template.jinja") or _pick(load("chat_template.json").get("chat_template")) \
        or _pick(config.get("chat_template"))
    if not source:
        return None
    tokens: dict[str, str] = {}
    for data in (load("special_tokens_map.json"), config):  # the tokenizer's own config wins
        for key in SPECIAL:
            value = _token(data.get(key))
            if value is not None:
                tokens[key] = value
    return ChatTemplate(source, tokens)


def read_files(model: str, revision: str = "") -> dict[str, str]:
    """A tokenizer's template-bearing files: from a local model directory, or the Hugging Face cache for a hub id."""
    out: dict[str, str] = {}
    local = Path(model).expanduser()
    if local.is_dir():
        for name in FILES:
            text = _read(local / name)
            if text is not None:
                out[name] = text
        return out
    from huggingface_hub import try_to_load_from_cache  # only for hub ids: reads the cache, never the network

    for name in FILES:
        try:
            found = try_to_load_from_cache(model, name, revision=revision or None)
        except ValueError:  # not a hub id either (a path that is not there): no files
            return out
        if isinstance(found, str):
            text = _read(Path(found))
            if text is not None:
                out[name] = text
    return out


class ChatTemplates:
    """Backbone (model, revision) -> its chat template, read once (off the event loop) and kept."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], ChatTemplate | None] = {}

    async def get(self, model: str, revision: str = "") -> ChatTemplate | None:
        key = (model, revision)
        if key not in self._known:
            files = await asyncio.to_thread(read_files, model, revision)
            self._known[key] = from_files(files)
        return self._known[key]
