"""One coordinator with its HTTP face for the REST, OpenAI-face and browser tests (tests/test_rest.py,
tests/test_openai.py, tests/test_generate_options.py, tests/test_console.py).

Registered in tests/conftest.py (`pytest_plugins`); started once per session when a test asks for it: tokens on,
an admin secret, a reader and a trainer token, a tiny encoder, a tiny causal LM, and a copy of that causal LM whose
tokenizer has a chat template, each with one trained prompt.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.config import BackboneSpec, ServerConfig
from coordinator.limits import Limits
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.test_server import DATA, HP, input_hp

ADMIN = "pbt_rest-admin-secret-0123456789abcdef0123456789"
TINY_HP = input_hp(num_virtual_tokens=2, max_steps=4, batch_size=8)
# A chat template in the style of real ones: roles in markers, the special tokens it knows, the assistant's turn
# opened on request, and a refusal of roles it does not know.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}"
    "<{{ m['role'] }}> {{ m['content'] | trim }} {{ sep_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def with_chat_template(model: str, path: Path) -> str:
    """A copy of a tiny model whose tokenizer has CHAT_TEMPLATE (saved as transformers saves one)."""
    from transformers import AutoTokenizer

    shutil.copytree(model, path, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return str(path)


@dataclass
class RestStack:
    live: LiveServer
    url: str  # http://127.0.0.1:PORT/
    tokens: dict[str, str]  # role -> secret ("admin" too)
    job: jp.TrainJob  # the encoder prompt's finished job: prompts/rest-sentiment, version 1, alias prod
    lm_prompt: str  # a prompt on the causal LM (Generate)
    chat_model: str = ""  # the path of the "chat" backbone: the causal LM with a chat template
    chat_prompt: str = "rest-chat"  # a prompt on it

    def client(self, role: str = "admin") -> Client:
        return Client(self.live.address, token=self.tokens[role], timeout=60)


@pytest.fixture(scope="session")
def rest_stack(ray_session: None, tiny_encoder: str, tiny_causal_lm: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    chat_model = with_chat_template(tiny_causal_lm, tmp_path_factory.mktemp("tiny-chat-lm"))
    cfg = ServerConfig(port=0, http_port=0, db=str(tmp_path_factory.mktemp("rest") / "bank.db"), auth="tokens",
                       admin_token=ADMIN, grace_seconds=0.5,
                       worker_cpus=0.05,  # it lives until the session ends: keep Ray's CPUs for the other tests
                       limits=Limits(classify_rows=64, text_chars=500),
                       backbones=(BackboneSpec("enc", tiny_encoder), BackboneSpec("lm", tiny_causal_lm),
                                  BackboneSpec("chat", chat_model)))
    live = LiveServer(cfg)
    assert live.coord.http is not None
    try:
        with Client(live.address, token=ADMIN, timeout=60) as admin:
            tokens = {role: admin.create_token(f"rest-{role}", role).secret for role in ("reader", "trainer")}
            job = admin.create_train_job("rest-sentiment", "enc", DATA, hyperparameters=HP, aliases=["prod"])
            lm = admin.create_train_job("rest-lm", "lm", DATA, hyperparameters=TINY_HP)
            chat = admin.create_train_job("rest-chat", "chat", DATA, hyperparameters=TINY_HP)
            done = admin.wait_job(job.name, timeout=300)
            assert done.state == jp.TrainJob.SUCCEEDED, done.error
            for j in (lm, chat):
                assert admin.wait_job(j.name, timeout=300).state == jp.TrainJob.SUCCEEDED
        yield RestStack(live, live.coord.http.url, {**tokens, "admin": ADMIN}, done, "rest-lm", chat_model)
    finally:
        live.stop()
