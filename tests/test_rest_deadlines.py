"""REST deadlines and streams on a real coordinator (loopback, real Ray, SQLite): a call carries a deadline in
`grpc-timeout` or `X-Request-Timeout` (a malformed one is a 400 naming its header); when it passes the call's
work stops (a Classify's rows leave their batch, a Generate's row its replica's) and the answer is a 504 in the
route's error shape, or an error event on a stream already open; and every Server-Sent Events stream sends its
headers before its first event, seen by a raw HTTP client while the generation waits in its replica's queue.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from multidict import CIMultiDict

from coordinator.batcher import BatchLimits, MicroBatcher
from coordinator.config import BackboneSpec, ServerConfig
from coordinator.rest.deadline import deadline_of
from promptbank import Client
from promptbank_api.errors import InvalidArgument
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.raw_http import connect
from tests.test_generation_serving import add_prompt, sample
from tests.test_server import DATA, input_hp

TEXT = "the weather today is"
LONG = 500  # new tokens: seconds of decoding on the slow model below


def build_slow_lm(tiny_causal_lm: str, path: Path) -> str:
    """The tiny causal LM's tokenizer on a deeper, longer GPT-2 (random): a 500-token generation takes seconds
    on a CPU, so a deadline or a queue can be caught while it runs."""
    from transformers import GPT2Config, GPT2LMHeadModel

    shutil.copytree(tiny_causal_lm, path, dirs_exist_ok=True)
    cfg = GPT2Config(vocab_size=30522, n_embd=32, n_layer=48, n_head=4, n_positions=1024, bos_token_id=101,
                     eos_token_id=102, initializer_range=0.2)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def live(ray_session: None, tiny_encoder: str, tiny_causal_lm: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Auth off (loopback), an encoder and the slow LM with room for one running generation (others queue)."""
    slow = build_slow_lm(tiny_causal_lm, tmp_path_factory.mktemp("slow-lm"))
    cfg = ServerConfig(port=0, http_port=0, db=str(tmp_path_factory.mktemp("deadlines") / "bank.db"), worker_cpus=0.1,
                       grace_seconds=0.5, generate_max_seqs=1,
                       backbones=(BackboneSpec("enc", tiny_encoder), BackboneSpec("slow", slow)))
    server = LiveServer(cfg)
    try:
        with Client(server.address, timeout=60) as c:
            add_prompt(server, c, "dl-enc", "enc")
            add_prompt(server, c, "dl-lm", "slow")
        yield server
    finally:
        server.stop()


def url(server: LiveServer) -> str:
    assert server.coord.http is not None
    return server.coord.http.url


def post(server: LiveServer, path: str, body: dict[str, Any], **headers: str) -> requests.Response:
    return requests.post(f"{url(server)}{path.lstrip('/')}", json=body, timeout=60,
                         headers={k.replace("_", "-"): v for k, v in headers.items()})


def opened(server: LiveServer, method: str, path: str, body: dict[str, Any] | None = None,
           within: float = 5.0) -> tuple[socket.socket, int, dict[str, str], bytes]:
    """A raw HTTP request, read up to the end of its response's headers: (socket, status, headers, what came
    after them). socket.timeout when the headers do not come within `within` seconds."""
    sock = connect(url(server), timeout=within)
    data = json.dumps(body).encode() if body is not None else b""
    sock.sendall((f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the headers: {got!r}"
        got += chunk
    raw, _, rest = got.partition(b"\r\n\r\n")
    status, *lines = raw.decode("latin-1").split("\r\n")
    return sock, int(status.split()[1]), {k.strip().lower(): v.strip() for k, _, v in
                                           (h.partition(":") for h in lines)}, rest


def nothing_more(sock: socket.socket, for_s: float) -> bool:
    """Whether the server sends nothing more on `sock` for `for_s` seconds."""
    sock.settimeout(for_s)
    try:
        sock.recv(65536)
    except TimeoutError:
        return True
    return False


def read_rest(sock: socket.socket, until: bytes, within: float = 60.0) -> bytes:
    sock.settimeout(within)
    got = b""
    while until not in got:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def cancels(server: LiveServer) -> float:
    return sample(server, "promptbank_generate_cancels_total", "slow", outcome="removed")


def wait_for(check: Any, what: str, within: float = 30.0) -> None:
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def test_deadline_headers_are_read_and_a_malformed_one_is_a_400_naming_it(live: LiveServer) -> None:
    async def seconds(**headers: str) -> float:
        d = deadline_of(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}))
        assert d is not None
        return round(d.remaining(), 3)

    for value, want in (("500m", 0.5), ("30S", 30.0), ("2M", 120.0), ("1H", 3600.0), ("99999999n", 0.1)):
        assert asyncio.run(seconds(grpc_timeout=value)) == pytest.approx(want, abs=0.01), value
    for value, want in (("30", 30.0), ("2.5", 2.5), (".25", 0.25)):
        assert asyncio.run(seconds(X_Request_Timeout=value)) == pytest.approx(want, abs=0.01), value
    assert asyncio.run(seconds(grpc_timeout="10S", X_Request_Timeout="2")) == pytest.approx(2.0, abs=0.01)

    async def none() -> None:
        assert deadline_of(CIMultiDict()) is None  # no header: no deadline, as for gRPC without grpc-timeout

    asyncio.run(none())
    for header, value in (("grpc-timeout", "5"), ("grpc-timeout", "0S"), ("grpc-timeout", "123456789S"),
                          ("grpc-timeout", "1.5S"), ("X-Request-Timeout", "0"), ("X-Request-Timeout", "-1"),
                          ("X-Request-Timeout", "nan"), ("X-Request-Timeout", "inf"), ("X-Request-Timeout", "1e3"),
                          ("X-Request-Timeout", "")):
        with pytest.raises(InvalidArgument, match=header):
            asyncio.run(seconds(**{header.replace("-", "_"): value}))
        rest = requests.get(f"{url(live)}v1/prompts", headers={header: value}, timeout=30)
        assert rest.status_code == 400 and rest.json()["code"] == 3 and header in rest.json()["message"], rest.text
        oai = post(live, "/v1/completions", {"model": "dl-lm", "prompt": "hi"}, **{header: value})
        assert oai.status_code == 400 and header in oai.json()["error"]["message"], oai.text
        assert oai.json()["error"]["type"] == "invalid_request_error"
    ok = requests.get(f"{url(live)}v1/prompts", headers={"X-Request-Timeout": "30", "grpc-timeout": "20S"}, timeout=30)
    assert ok.status_code == 200 and "dl-enc" in ok.text  # a call within its deadline is answered as ever


def test_a_classify_past_its_deadline_is_a_504_and_its_rows_never_run(live: LiveServer) -> None:
    async def on_loop() -> MicroBatcher:
        return live.coord.inference.batcher("enc")

    batcher = live.call(on_loop())
    # hold each batch open well past the deadlines, which leave the call time to resolve its prompt (a read on a
    # reader thread) and reach the batcher first, even on a loaded machine
    batcher.limits, limits = BatchLimits(max_rows=64, max_wait_ms=4000), batcher.limits
    body = {"rows": [{"prompt": "dl-enc", "text": f"words {i}"} for i in range(3)]}
    try:
        for header, value in (("X-Request-Timeout", "1.5"), ("grpc-timeout", "1500m")):
            dropped, rows = batcher.dropped_rows, batcher.rows
            late = post(live, "/v1/prompts:classify", body, **{header: value})  # answered before its batch forms
            assert late.status_code == 504, late.text
            assert late.json()["code"] == 4 and f"{header}: {value}" in late.json()["message"]
            wait_for(lambda d=dropped: batcher.dropped_rows - d == 3, "the rows of the call past its deadline still ran")
            assert batcher.rows == rows
        no_deadline = post(live, "/v1/prompts:classify", body)  # none by default: it waits for its batch
        assert no_deadline.status_code == 200 and len(no_deadline.json()["results"]) == 3
    finally:
        batcher.limits = limits


def test_a_generation_past_its_deadline_leaves_its_replica(live: LiveServer) -> None:
    before = cancels(live)  # the deadlines below pass while the row decodes (it would take seconds more)
    late = post(live, "/v1/completions", {"model": "dl-lm", "prompt": TEXT, "max_tokens": LONG},
                X_Request_Timeout="1.5")
    assert late.status_code == 504, late.text
    error = late.json()["error"]
    assert error["code"] == "deadline_exceeded" and error["type"] == "timeout_error"
    assert "X-Request-Timeout: 1.5" in error["message"]
    wait_for(lambda: cancels(live) > before, "the replica was never told (or the generation had ended)")

    before = cancels(live)
    with requests.post(f"{url(live)}v1/prompts:generate", json={"prompt": "dl-lm", "text": TEXT, "maxNewTokens": LONG},
                       headers={"grpc-timeout": "1500m"}, stream=True, timeout=60) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines(decode_unicode=True) if line]
    assert "event: error" in lines and "event: end" not in lines, lines[-3:]
    failure = json.loads(lines[lines.index("event: error") + 1][len("data: "):])
    assert failure["code"] == 4 and "grpc-timeout: 1500m" in failure["message"]
    wait_for(lambda: cancels(live) > before, "the stream's row stayed on its replica after its deadline")
    live.call(live.coord.pool.generation.poll())
    assert sample(live, "promptbank_generate_running", "slow") == 0


def test_streams_send_their_headers_before_their_first_event(live: LiveServer) -> None:
    with Client(live.address, timeout=120) as c:
        holder = c.inference.Generate(inf.GenerateRequest(prompt="dl-lm", text=TEXT, max_new_tokens=LONG), timeout=120)
        assert next(holder).text  # it runs: the one running row of the replica; what comes next waits behind it
        waiting = []
        try:
            for path, body in (("/v1/prompts:generate", {"prompt": "dl-lm", "text": TEXT, "maxNewTokens": 4}),
                               ("/v1/completions", {"model": "dl-lm", "prompt": TEXT, "max_tokens": 4, "stream": True})):
                sock, status, headers, rest = opened(live, "POST", path, body)
                waiting.append(sock)
                assert status == 200 and headers["content-type"].startswith("text/event-stream"), (path, headers)
                assert rest == b"" and nothing_more(sock, 0.3), f"{path}: an event came with the headers"
            piece = next(holder)
            assert piece.text and not piece.done, "the generation ahead ended: the streams may have begun"
        finally:
            holder.cancel()
        for sock in waiting:  # once the replica is free each stream goes on to its events and its end
            got = read_rest(sock, b"0\r\n\r\n")
            assert b"data: " in got and (b"event: end" in got or b"data: [DONE]" in got), got[-200:]
            sock.close()

        job = c.create_train_job("dl-watch", "enc", DATA, hyperparameters=input_hp(num_virtual_tokens=2, epochs=200))
        sock, status, headers, rest = opened(live, "GET", f"/v1/{job.name}:watch?afterSequence=1000000")
        try:
            assert status == 200 and headers["content-type"].startswith("text/event-stream") and rest == b""
            assert nothing_more(sock, 0.3), "a watch past the last event sent one"
            c.cancel_job(job.name)
            assert b"event: end" in read_rest(sock, b"event: end")
        finally:
            sock.close()
        assert c.wait_job(job.name, timeout=120).state == jp.TrainJob.CANCELLED
