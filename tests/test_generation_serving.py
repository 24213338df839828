"""Generate served by a coordinator: a caller that goes removes its row from the replica's running batch (seen
in the metrics), a generation that can never fit is RESOURCE_EXHAUSTED naming its flag, generation queueing
grows the replicas, and the flags reach the replicas; batching off streams the same tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
import torch

from bank import catalog
from bank.codec import encode_prompt
from coordinator.__main__ import parse
from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import inference_pb2 as inf
from tests.conftest import LiveServer
from tests.test_server import code_of
from workers.actor import BackboneWorker
from workers.protocol import GenerateRequest, GenerationSettings


def add_prompt(server: LiveServer, client: Client, name: str, backbone: str, hidden: int = 32) -> None:
    """A stored input prompt on `backbone`, added straight to the bank (no training needed to generate)."""
    client.catalog.CreatePrompt(cat.CreatePromptRequest(prompt_id=name, prompt=cat.Prompt(
        task=cat.TaskSpec(labels=["a", "b"]))), timeout=10)
    blob = encode_prompt(torch.randn(3, hidden, generator=torch.Generator().manual_seed(1)))
    server.coord.db.run_sync(lambda s: catalog.add_version(s, name, backbone, blob))


def sample(server: LiveServer, name: str, backbone: str, **labels: str) -> float:
    return server.coord.metrics.registry.get_sample_value(name, {"backbone": backbone, **labels}) or 0.0


def test_a_caller_that_goes_removes_its_row_at_the_next_step(server: LiveServer, client: Client) -> None:
    add_prompt(server, client, "gen-cancel", "tiny-lm")
    removed = sample(server, "promptbank_generate_cancels_total", "tiny-lm", outcome="removed")
    call = client.inference.Generate(inf.GenerateRequest(prompt="gen-cancel", text="the weather today is",
                                                         max_new_tokens=240), timeout=60)
    got = [next(call).text, next(call).text]
    call.cancel()  # the caller goes with 238 tokens to go
    assert all(got)
    end = time.monotonic() + 30
    while sample(server, "promptbank_generate_cancels_total", "tiny-lm", outcome="removed") <= removed:
        assert time.monotonic() < end, "the coordinator never told the replica (or it had already finished)"
        time.sleep(0.05)
    server.call(server.coord.pool.generation.poll())
    assert sample(server, "promptbank_generate_running", "tiny-lm") == 0
    assert sample(server, "promptbank_generate_rows_cancelled", "tiny-lm") >= 1


@pytest.fixture(scope="module")
def small(ray_session: None, tiny_causal_lm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One replica with room for one running row of at most 200 cached tokens; may grow to two replicas when
    generations wait 50 ms to join."""
    cfg = ServerConfig(port=0, db=str(tmp_path_factory.mktemp("gen-bank") / "bank.db"), grace_seconds=1.0,
                       worker_cpus=0.25, backbones=(BackboneSpec("lm", tiny_causal_lm),), generate_max_seqs=1,
                       generate_max_cached_tokens=200, max_replicas=2, scale_up_wait_ms=50)
    live = LiveServer(cfg)
    yield live
    live.stop()


def test_a_generation_that_can_never_fit_is_resource_exhausted(small: LiveServer) -> None:
    with Client(small.address, timeout=60) as c:
        add_prompt(small, c, "fit", "lm")
        code, msg = code_of(lambda: list(c.generate("fit", "the weather today is", max_new_tokens=230)))  # fits 256 positions, not 200 cached tokens
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--generate-max-cached-tokens 200" in msg, msg
        assert list(c.generate("fit", "the weather today is", max_new_tokens=20))  # one that fits runs


def test_generation_queueing_is_measured_and_grows_the_replicas(small: LiveServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with Client(small.address, timeout=120) as c:
        add_prompt(small, c, "queue", "lm")

        def one(i: int) -> str:
            return "".join(c.generate("queue", f"text number {i} is", max_new_tokens=150))

        with ThreadPoolExecutor(max_workers=6) as ex:
            outs = list(ex.map(one, range(6)))
    assert all(outs)
    assert sample(small, "promptbank_generate_queue_wait_seconds_count", "lm") >= 1
    end = time.monotonic() + 30
    while small.coord.autoscaler is not None and small.coord.autoscaler.grown == 0:
        assert time.monotonic() < end, "six generations queued behind one slot, and no replica was added"
        time.sleep(0.2)
    assert len(small.coord.pool.get("lm").replicas) == 2


def test_batching_off_streams_what_batching_on_streams(tiny_causal_lm: str) -> None:
    on = BackboneWorker(tiny_causal_lm, num_threads=1)
    off = BackboneWorker(tiny_causal_lm, num_threads=1, generation=GenerationSettings(batching=False))
    assert on.engine() is not None and off.engine() is None
    for text, n in (("the weather today is", 12), ("a", 7)):
        r = GenerateRequest("", {}, text, max_new_tokens=n, stop=("zzz",))
        assert "".join(p.text for p in on.generate(r)) == "".join(p.text for p in off.generate(r))


def test_the_generate_flags_reach_the_replicas_settings() -> None:
    cfg = parse(["--port", "0", "--backbone", "x=/nonexistent", "--generate-batching", "off", "--generate-max-seqs",
                 "3", "--generate-max-cached-tokens", "999"])
    assert cfg.generation == GenerationSettings(batching=False, max_seqs=3, max_cached_tokens=999)
    assert cfg.generation.calls == 8  # batching off: at most 8 sequences decode at once per replica, as before
    assert parse(["--port", "0", "--backbone", "x=/nonexistent"]).generation == GenerationSettings()
    with pytest.raises(ValueError, match="--generate-max-seqs 0"):
        ServerConfig(generate_max_seqs=0)
