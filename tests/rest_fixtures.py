"""One coordinator with its HTTP face for the REST and browser tests (tests/test_rest.py, tests/test_console.py).

Registered in tests/conftest.py (`pytest_plugins`); started once per session when a test asks for it: tokens on,
an admin secret, a reader and a trainer token, a tiny encoder and a tiny causal LM, each with one trained prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from coordinator.config import BackboneSpec, ServerConfig
from coordinator.limits import Limits
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.test_server import DATA, HP, input_hp

ADMIN = "pbt_rest-admin-secret-0123456789abcdef0123456789"
TINY_HP = input_hp(num_virtual_tokens=2, max_steps=4, batch_size=8)


@dataclass
class RestStack:
    live: LiveServer
    url: str  # http://127.0.0.1:PORT/
    tokens: dict[str, str]  # role -> secret ("admin" too)
    job: jp.TrainJob  # the encoder prompt's finished job: prompts/rest-sentiment, version 1, alias prod
    lm_prompt: str  # a prompt on the causal LM (Generate)

    def client(self, role: str = "admin") -> Client:
        return Client(self.live.address, token=self.tokens[role], timeout=60)


@pytest.fixture(scope="session")
def rest_stack(ray_session: None, tiny_encoder: str, tiny_causal_lm: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    cfg = ServerConfig(port=0, http_port=0, db=str(tmp_path_factory.mktemp("rest") / "bank.db"), auth="tokens",
                       admin_token=ADMIN, grace_seconds=0.5,
                       worker_cpus=0.05,  # it lives until the session ends: keep Ray's CPUs for the other tests
                       limits=Limits(classify_rows=64, text_chars=500),
                       backbones=(BackboneSpec("enc", tiny_encoder), BackboneSpec("lm", tiny_causal_lm)))
    live = LiveServer(cfg)
    assert live.coord.http is not None
    try:
        with Client(live.address, token=ADMIN, timeout=60) as admin:
            tokens = {role: admin.create_token(f"rest-{role}", role).secret for role in ("reader", "trainer")}
            job = admin.create_train_job("rest-sentiment", "enc", DATA, hyperparameters=HP, aliases=["prod"])
            lm = admin.create_train_job("rest-lm", "lm", DATA, hyperparameters=TINY_HP)
            done = admin.wait_job(job.name, timeout=300)
            assert done.state == jp.TrainJob.SUCCEEDED, done.error
            assert admin.wait_job(lm.name, timeout=300).state == jp.TrainJob.SUCCEEDED
        yield RestStack(live, live.coord.http.url, {**tokens, "admin": ADMIN}, done, "rest-lm")
    finally:
        live.stop()
