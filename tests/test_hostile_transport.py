"""Issue 30, items 4 and 11, on a real coordinator (`auth tokens`, loopback, real Ray, SQLite): no work before
authentication and no connection held by a client that stalls.

Item 4: a refused gRPC call's message is never received or parsed (UNAUTHENTICATED even when it is over the receive
limit, and no memory for a message of millions of empty rows); the REST face decides a call from its headers before
it reads a byte of the body (401/403 while the client is still sending), caps each route's body (413 naming the
limit and its flag), and parses large bodies off the event loop; the default receive limit is sized to the largest
legitimate message. Item 11: connections that send no request, or part of their headers, are closed within the
header timeout, a stalled body within the body timeout (408), and connections beyond the cap are refused.
(Item 8, the console's encoded paths, is tested in a real browser in tests/test_console.py.)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import pytest
import requests

from bank.peft_format import MAX_ADAPTER_BYTES
from coordinator.__main__ import parse
from coordinator.config import BackboneSpec, ServerConfig
from coordinator.limits import Limits
from promptbank import Client
from promptbank_api.v1 import inference_pb2 as inf
from tests.conftest import LiveServer
from tests.raw_http import connect, head, peak_rss_growth, response, wait_closed

ADMIN = "pbt_hostile-admin-secret-0123456789abcdef0123456789"
HEADER_S, BODY_S, MAX_CONNECTIONS = 2.0, 2.0, 80
LIMITS = Limits(message_bytes=32 << 20, rest_body_bytes=64 << 10, rest_bulk_bytes=4 << 20)
CLASSIFY = "/promptbank.v1.Inference/Classify"
EMPTY_ROW = b"\x0a\x00"  # ClassifyRequest.rows: one empty ClassifyRow (field 1, length 0)


@dataclass
class Hostile:
    live: LiveServer
    url: str
    tokens: dict[str, str]  # role -> secret


@pytest.fixture(scope="module")
def hostile(ray_session: None, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    cfg = ServerConfig(port=0, http_port=0, db=str(tmp_path_factory.mktemp("hostile") / "b.db"), auth="tokens",
                       admin_token=ADMIN, worker_cpus=0.05, grace_seconds=0.5, limits=LIMITS,
                       http_header_timeout_s=HEADER_S, http_body_timeout_s=BODY_S,
                       http_max_connections=MAX_CONNECTIONS, backbones=(BackboneSpec("enc", tiny_encoder),))
    live = LiveServer(cfg)
    try:
        assert live.coord.http is not None
        with Client(live.address, token=ADMIN) as admin:
            tokens = {role: admin.create_token(f"hostile-{role}", role).secret for role in ("reader", "trainer")}
        yield Hostile(live, live.coord.http.url, {**tokens, "admin": ADMIN})
    finally:
        live.stop()


def raw_call(stack: Hostile, method: str, payload: bytes, token: str = "") -> tuple[grpc.StatusCode, str]:
    """A unary call with a request of raw bytes (built cheaply; the client parses nothing)."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(stack.live.address, options=[("grpc.max_send_message_length", 256 << 20)]) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as err:
            call(payload, metadata=metadata, timeout=60)
    return err.value.code(), err.value.details()


def rest(stack: Hostile, method: str, path: str, role: str | None = None, **kw):  # type: ignore[no-untyped-def]
    headers = {**({"Authorization": f"Bearer {stack.tokens[role]}"} if role else {}), **kw.pop("headers", {})}
    return requests.request(method, stack.url.rstrip("/") + path, headers=headers, timeout=kw.pop("timeout", 30), **kw)


def test_the_default_receive_limit_fits_the_largest_legitimate_message_and_no_more() -> None:
    limits = Limits()
    widest = "\U0001F600" * limits.text_chars  # 4 bytes a character in UTF-8
    row = inf.ClassifyRow(prompt="p" * 63 + "@production", text=widest)
    classify = inf.ClassifyRequest(rows=[row]).ByteSize() * limits.classify_rows
    largest = max(classify, MAX_ADAPTER_BYTES + (1 << 20))  # a PEFT import: its weights and a config
    assert largest <= limits.message_bytes < 1.5 * largest, (largest, limits.message_bytes)


def test_grpc_refuses_before_receiving_the_message(hostile: Hostile) -> None:
    """Over the receive limit, a refused call is still refused for what it is: grpc never started to receive it."""
    over = EMPTY_ROW * ((LIMITS.message_bytes >> 1) + 1024)
    code, message = raw_call(hostile, CLASSIFY, over)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in message
    assert raw_call(hostile, CLASSIFY, over, "pbt_wrong-token")[0] == grpc.StatusCode.UNAUTHENTICATED
    code, message = raw_call(hostile, "/promptbank.v1.PromptCatalog/ImportPromptVersion", over,
                             hostile.tokens["reader"])
    assert code == grpc.StatusCode.PERMISSION_DENIED and "admin role" in message
    code, message = raw_call(hostile, CLASSIFY, over, hostile.tokens["reader"])  # allowed: the limit applies
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and str(LIMITS.message_bytes) in message


def test_grpc_refused_message_costs_no_memory(hostile: Hostile) -> None:
    """30 MB of empty rows is 15 million messages once parsed (about 900 MB); refused, it is never parsed."""
    rows = EMPTY_ROW * (15 << 20)
    (code, _), grown = peak_rss_growth(lambda: raw_call(hostile, CLASSIFY, rows))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert grown < 150 << 20, f"the process grew {grown >> 20} MB for a refused 30 MB message"


@pytest.mark.parametrize(("role", "path", "status", "code"), [
    (None, "/v1/prompts:classify", 401, 16),
    ("bad", "/v1/prompts:classify", 401, 16),
    ("reader", "/v1/prompts/x/versions:import", 403, 7),
    ("reader", "/v1/datasets", 403, 7),
])
def test_rest_refuses_from_the_headers_before_the_body_arrives(hostile: Hostile, role: str | None, path: str,
                                                               status: int, code: int) -> None:
    token = "pbt_wrong-token" if role == "bad" else hostile.tokens.get(role or "", "")
    with connect(hostile.url) as sock:
        sock.sendall(head("POST", path, 16 << 20, token) + b'{"rows": [' + b"{}," * 300)  # 16 MB promised
        got, headers, body = response(sock, timeout=10)  # before the rest is sent: the body was never needed
    assert (got, body["code"]) == (status, code), body


@contextmanager
def meanwhile(stack: Hostile) -> Iterator[list[float]]:
    """A reader's small calls, one after another, while the block runs: the seconds each took to be answered."""
    answers: list[float] = []
    statuses: list[int] = []
    done = threading.Event()

    def calls() -> None:
        while not done.is_set():
            began = time.monotonic()
            statuses.append(rest(stack, "GET", "/v1/backbones", "reader").status_code)
            answers.append(time.monotonic() - began)
            time.sleep(0.05)

    thread = threading.Thread(target=calls)
    thread.start()
    try:
        yield answers
    finally:
        done.set()
        thread.join(30)
    assert statuses and set(statuses) == {200}, statuses


def test_an_unauthenticated_16mb_body_is_refused_at_once_while_other_calls_go_on(hostile: Hostile) -> None:
    body = b'{"rows": [' + b"{}," * ((16 << 20) // 3) + b"{}]}"
    began = time.monotonic()
    with meanwhile(hostile) as answers:
        (refused, elapsed), grown = peak_rss_growth(lambda: (rest(hostile, "POST", "/v1/prompts:classify", data=body,
                                                                  headers={"Content-Type": "application/json"}),
                                                             time.monotonic() - began))
    assert refused.status_code == 401 and refused.json()["code"] == 16
    assert elapsed < 10, f"a refused 16 MB body took {elapsed:.1f} s"
    assert max(answers) < 2, f"other calls waited up to {max(answers):.1f} s"
    assert grown < 200 << 20, f"the process grew {grown >> 20} MB for a refused 16 MB body"


def test_rest_bodies_are_capped_per_route_naming_the_limit(hostile: Hostile) -> None:
    reader = hostile.tokens["reader"]
    with connect(hostile.url) as sock:  # a declared length over the cap: refused before a byte is sent
        sock.sendall(head("POST", "/v1/prompts:classify", LIMITS.rest_bulk_bytes + 1, reader))
        status, _, body = response(sock, timeout=10)
    assert (status, body["code"]) == (413, 8) and "--limit-rest-bulk-bytes" in body["message"]
    assert str(LIMITS.rest_bulk_bytes) in body["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"rows": ['
        for _ in range(LIMITS.rest_bulk_bytes // (1 << 16) + 1):
            yield b'{"text": "' + b"x" * ((1 << 16) - 16) + b'"},'
        yield b"{}]}"

    got = rest(hostile, "POST", "/v1/prompts:classify", "reader", data=chunks(),
               headers={"Content-Type": "application/json"})
    assert got.status_code == 413 and "--limit-rest-bulk-bytes" in got.json()["message"]
    plain = {"name": "prompts/capped", "task": {"labels": ["a", "b"], "description": "d" * LIMITS.rest_body_bytes}}
    got = rest(hostile, "POST", "/v1/prompts", "admin", json=plain)  # not a bulk route: the small cap
    assert got.status_code == 413 and got.json()["code"] == 8 and "--limit-rest-body-bytes" in got.json()["message"]
    rows = [{"prompt": "nope", "text": "x" * 4000}] * 40  # over the small cap, under the bulk one: read and run
    assert len(json.dumps({"rows": rows})) > LIMITS.rest_body_bytes
    under = rest(hostile, "POST", "/v1/prompts:classify", "reader", json={"rows": rows})
    assert under.status_code == 404 and "nope" in under.json()["message"], under.text


def test_upload_lines_are_capped_one_by_one(hostile: Hostile) -> None:
    line = json.dumps({"examples": [{"text": f"row {i} " + "y" * 200, "label": "ab"[i % 2]} for i in range(6000)]})
    assert LIMITS.rest_bulk_bytes // 4 < len(line) < LIMITS.rest_bulk_bytes
    ok = rest(hostile, "POST", "/v1/datasets", "trainer", data=("\n".join([line] * 5)).encode(),
              headers={"Content-Type": "application/x-ndjson"})  # 5 lines: more than the cap in all, each under it
    assert ok.status_code == 200 and ok.json()["rows"] == str(5 * 6000), ok.text
    big = json.dumps({"examples": [{"text": "z" * 10_000, "label": "a"}] * (LIMITS.rest_bulk_bytes // 10_000 + 1)})
    over = rest(hostile, "POST", "/v1/datasets", "trainer", data=big.encode(),
                headers={"Content-Type": "application/x-ndjson"})
    assert over.status_code == 413 and over.json()["code"] == 8, over.text
    assert "a line of the upload" in over.json()["message"] and "--limit-rest-bulk-bytes" in over.json()["message"]


def test_a_large_body_is_parsed_off_the_event_loop(hostile: Hostile) -> None:
    """Over a million empty rows take seconds to parse; other calls are answered meanwhile."""
    body = b'{"rows": [' + b"{}," * (LIMITS.rest_bulk_bytes // 3 - 10) + b"{}]}"
    began = time.monotonic()
    with meanwhile(hostile) as answers:
        got = rest(hostile, "POST", "/v1/prompts:classify", "reader", data=body, timeout=120,
                   headers={"Content-Type": "application/json"})
        took = time.monotonic() - began
    assert got.status_code == 429 and "--limit-classify-rows" in got.json()["message"]  # parsed, then refused
    assert len(answers) >= 3 and max(answers) < max(took / 3, 0.5), (took, answers)


def test_half_open_connections_are_closed_within_the_header_timeout(hostile: Hostile) -> None:
    silent = [connect(hostile.url) for _ in range(20)]
    partial = [connect(hostile.url) for _ in range(20)]
    drip = [connect(hostile.url) for _ in range(10)]
    for s in partial:
        s.sendall(b"POST /v1/prompts:classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    for s in drip:
        s.sendall(b"GET /v1/backbones HTTP/1.1\r\nX-Slow: ")
    took = wait_closed(silent + partial + drip, within=HEADER_S + 4, drip=drip)
    assert took >= HEADER_S - 0.5  # closed by the deadline, not at once
    for s in silent + partial + drip:
        s.close()
    assert rest(hostile, "GET", "/v1/backbones", "reader").status_code == 200


def test_a_stalled_body_is_answered_408_and_closed(hostile: Hostile) -> None:
    with connect(hostile.url) as sock:
        sock.sendall(head("POST", "/v1/prompts:classify", 1000, hostile.tokens["reader"]) + b'{"rows": [')
        status, _, body = response(sock, timeout=BODY_S + 4)
        assert (status, body["code"]) == (408, 4) and "--http-body-timeout" in body["message"]
        wait_closed([sock], within=HEADER_S + 2)  # after its unread rest was given the header timeout
    with connect(hostile.url) as sock:  # an upload that stops between lines
        line = json.dumps({"examples": [{"text": "good", "label": "a"}, {"text": "bad", "label": "b"}]}).encode()
        sock.sendall(head("POST", "/v1/datasets", None, hostile.tokens["trainer"], "application/x-ndjson",
                          chunked=True) + b"%x\r\n%s\n\r\n" % (len(line) + 1, line))
        status, _, body = response(sock, timeout=BODY_S + 4)
        assert (status, body["code"]) == (408, 4) and "--http-body-timeout" in body["message"]


def test_connections_beyond_the_cap_are_refused_at_once(hostile: Hostile) -> None:
    socks = [connect(hostile.url) for _ in range(MAX_CONNECTIONS + 20)]
    time.sleep(0.5)
    first = [first_bytes(s) for s in socks]
    refused = sum(b is not None and b.startswith(b"HTTP/1.1 503") for b in first)
    held = [s for s, b in zip(socks, first, strict=True) if b is None]
    assert refused >= 20 and len(held) <= MAX_CONNECTIONS, (refused, len(held))
    wait_closed(held, within=HEADER_S + 4)
    for s in socks:
        s.close()
    assert rest(hostile, "GET", "/v1/backbones", "reader").status_code == 200  # the count went back down


def first_bytes(sock: socket.socket) -> bytes | None:
    """What the server sent on a connection that sent nothing: None while it says nothing."""
    sock.setblocking(False)
    try:
        return sock.recv(4096)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def test_the_http_transport_flags() -> None:
    argv = ["--port", "0", "--backbone", "x=/nonexistent"]
    cfg = parse([*argv, "--http-header-timeout", "3", "--http-body-timeout", "7", "--http-max-connections", "9"])
    assert (cfg.http_header_timeout_s, cfg.http_body_timeout_s, cfg.http_max_connections) == (3, 7, 9)
    assert parse([*argv, "--limit-rest-body-bytes", "1000"]).limits.rest_body_bytes == 1000
    with pytest.raises(ValueError, match="--http-max-connections"):
        ServerConfig(http_max_connections=0)


def test_the_sdk_uploads_long_rows_in_chunks_under_the_receive_limit(hostile: Hostile) -> None:
    """With a receive limit sized to real messages, the SDK's upload chunks by bytes as well as rows: 2,000 rows of
    20,000 characters (40 MB) were one 5,000-row chunk, over this server's 32 MiB limit."""
    rows = [(f"{i} " + "x" * (LIMITS.text_chars - 8), "pos" if i % 2 else "neg") for i in range(2000)]
    assert sum(len(t) for t, _ in rows) > LIMITS.message_bytes
    with Client(hostile.live.address, token=hostile.tokens["trainer"], timeout=120) as c:
        up = c.upload_dataset(rows)
    assert up.rows == 2000 and dict(up.label_counts) == {"pos": 1000, "neg": 1000}
