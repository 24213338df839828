"""Shared fixtures: tiny random HF models built from configs, one local Ray per session, a live server."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

# Before torch runs a kernel: oneDNN's AVX-512/AMX kernels pick their blocking by batch shape, so on such CPUs a
# row's forward differs from its co-batched twin by ~1e-7, which Adam's normalised steps grow to ~1e-2 over a
# run. The co-batching tests check that each job's gradients are its own, exactly; on AVX2 kernels (what AMD
# machines without AVX-512 run anyway) the forwards are batch-invariant and the comparison is exact. The product
# itself keeps the fastest kernels (docs/architecture.md, "Co-batched training").
os.environ.setdefault("DNNL_MAX_CPU_ISA", "AVX2")

import pytest  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)

from coordinator.config import BackboneSpec, ServerConfig, packaged_minilm
from coordinator.limits import Limits
from coordinator.server import Coordinator, start
from promptbank import Client

pytest_plugins = ["tests.pg_fixtures", "tests.rest_fixtures"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _tokenizer() -> PreTrainedTokenizerBase:
    """A real WordPiece vocabulary: the packaged MiniLM's tokenizer (no download)."""
    return AutoTokenizer.from_pretrained(packaged_minilm())


def build_tiny_encoder(path: Path) -> str:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256,
                     initializer_range=0.2)  # wide init: prompt positions' outputs depend on the text they read
    BertModel(cfg).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return str(path)


def build_tiny_causal_lm(path: Path) -> str:
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=4, n_positions=256, bos_token_id=101, eos_token_id=102,
                     initializer_range=0.2)  # wide init: a random model whose outputs depend on its context
    GPT2LMHeadModel(cfg).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return str(path)


def build_tiny_seq2seq(path: Path) -> str:
    torch.manual_seed(2)
    cfg = T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=102)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return str(path)


def build_tiny_masked_lm(path: Path) -> str:
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256, architectures=["BertForMaskedLM"])
    BertForMaskedLM(cfg).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return str(path)


TINY_BUILDERS = {"encoder": build_tiny_encoder, "causal_lm": build_tiny_causal_lm,
                 "seq2seq": build_tiny_seq2seq, "masked_lm": build_tiny_masked_lm}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tiny random model per architecture: {"encoder": path, "causal_lm": ..., "seq2seq": ..., "masked_lm": ...}."""
    return {arch: build(tmp_path_factory.mktemp(f"tiny-{arch}")) for arch, build in TINY_BUILDERS.items()}


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-causal-lm"))


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session (ray.init takes seconds)."""
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=256 << 20)
    yield
    ray.shutdown()


class LiveServer:
    """A coordinator running on its own event loop thread, as a real process would."""

    def __init__(self, config: ServerConfig):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        try:
            self.coord: Coordinator = self.call(start(config))
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            raise
        self.address = f"127.0.0.1:{self.coord.port}"

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=300)

    def stop(self) -> None:
        self.call(self.coord.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(ray_session: None, tiny_encoder: str, tiny_causal_lm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("bank") / "bank.db"
    cfg = ServerConfig(
        port=0, db=str(db), limits=Limits(classify_rows=64, text_chars=500), grace_seconds=1.0,
        worker_cpus=0.25,  # it lives all session (with what tests register on it): keep Ray's CPUs for the rest
        data_roots=(str(tmp_path_factory.getbasetemp()),),  # the tests' own files; nothing else
        model_roots=(str(tmp_path_factory.getbasetemp()),),  # the tiny models the tests build
        backbones=(BackboneSpec("tiny-enc", tiny_encoder), BackboneSpec("tiny-lm", tiny_causal_lm)),
    )
    live = LiveServer(cfg)
    yield live
    live.stop()


@pytest.fixture()
def client(server: LiveServer) -> Iterator[Client]:
    with Client(server.address, timeout=60) as c:
        yield c
