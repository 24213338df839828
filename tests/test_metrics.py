"""Metrics and logs of a running coordinator: real traffic over gRPC, /metrics scraped over HTTP and parsed,
JSON log lines captured while a token and a database password are configured, and the Grafana dashboard's
queries checked against what the server exports."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator import logs
from coordinator.config import BackboneSpec, ServerConfig
from coordinator.limits import Limits
from promptbank import Client
from tests.conftest import LiveServer
from tests.test_server import HP, POS, code_of, train

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "k8s" / "components" / "prometheus" / "promptbank-dashboard.json"
ADMIN_SECRET = "adm1n-s3cret-never-logged-7f3a"
DB_PASSWORD = "db-passw0rd-never-logged-91c2"
WRONG_SECRET = "wr0ng-s3cret-never-logged-5d10"
CATALOG, INFERENCE = "promptbank.v1.PromptCatalog", "promptbank.v1.Inference"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Obs:
    """The server, its /metrics address, an admin client, and the JSON log lines written since it started."""

    def __init__(self, live: LiveServer, metrics_port: int, lines: io.StringIO):
        self.live, self.lines = live, lines
        self.url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.admin = Client(live.address, timeout=60, token=ADMIN_SECRET)

    def scrape_text(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as r:
            assert r.status == 200
            return r.read().decode()

    def scrape(self) -> Samples:
        out: Samples = {}
        for family in text_string_to_metric_families(self.scrape_text()):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out


@pytest.fixture(scope="module")
def obs(ray_session: None, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Obs]:
    """A coordinator with tokens, a database password and metrics on; its `promptbank` log lines as JSON."""
    lines = io.StringIO()
    handler = logs.handler("json", (ADMIN_SECRET, DB_PASSWORD), stream=lines)
    logger = logging.getLogger("promptbank")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    port = free_port()
    cfg = ServerConfig(port=0, db=str(tmp_path_factory.mktemp("obs") / "bank.db"), metrics_port=port,
                       auth="tokens", admin_token=ADMIN_SECRET, db_password=DB_PASSWORD, grace_seconds=1.0,
                       limits=Limits(classify_rows=64, text_chars=500), backbones=(BackboneSpec("tiny-enc", tiny_encoder),))
    live = LiveServer(cfg)
    o = Obs(live, port, lines)
    try:
        yield o
    finally:
        o.admin.close()
        live.stop()
        logger.removeHandler(handler)
        logger.setLevel(level)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_metrics_follow_real_traffic(obs: Obs) -> None:
    before = obs.scrape()
    assert value(before, "promptbank_replicas", backbone="tiny-enc", state="live") == 1
    assert value(before, "promptbank_replicas", backbone="tiny-enc", state="dead") == 0
    job = train(obs.admin, "obs-sent")
    texts = POS[:3]
    calls = 4
    for _ in range(calls):
        obs.admin.classify([("obs-sent", t) for t in texts])
    code, _ = code_of(lambda: obs.admin.get_prompt("obs-no-such-prompt"))
    assert code is grpc.StatusCode.NOT_FOUND
    with Client(obs.live.address, timeout=30) as anonymous:
        code, _ = code_of(lambda: anonymous.get_prompt("obs-sent"))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    after = obs.scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # RPCs: each call counted once under the status its caller got, and timed
    assert moved("promptbank_rpcs_total", service=INFERENCE, method="Classify", code="OK") == calls
    assert moved("promptbank_rpcs_total", service=INFERENCE, method="Classify") == calls
    assert moved("promptbank_rpc_duration_seconds_count", service=INFERENCE, method="Classify") == calls
    assert moved("promptbank_rpcs_total", service=CATALOG, method="GetPrompt", code="NOT_FOUND") == 1
    assert moved("promptbank_rpcs_total", service=CATALOG, method="GetPrompt", code="UNAUTHENTICATED") == 1
    assert moved("promptbank_rpcs_total", method="CreateTrainJob", code="OK") == 1
    assert moved("promptbank_rpc_duration_seconds_sum", service=INFERENCE, method="Classify") > 0
    # micro-batches: every row sent rode in an answered batch; each request waited once in the queue
    rows = calls * len(texts)
    assert moved("promptbank_batch_rows_sum", backbone="tiny-enc") == rows
    batches = moved("promptbank_batches_total", backbone="tiny-enc", outcome="ok")
    assert 1 <= batches <= calls
    assert moved("promptbank_batch_rows_count", backbone="tiny-enc") == batches
    assert moved("promptbank_batch_fill_ratio_sum", backbone="tiny-enc") == pytest.approx(rows / 64)
    assert moved("promptbank_batch_queue_wait_seconds_count", backbone="tiny-enc") == calls
    assert value(after, "promptbank_batch_queue_rows", backbone="tiny-enc") == 0
    assert moved("promptbank_batches_total", outcome="error") == 0
    # prompt caches: resolved, read from SQL and sent to the replica once; hits afterwards
    for cache in ("resolution", "tensor", "replica"):
        assert moved("promptbank_prompt_cache_lookups_total", cache=cache, result="miss") == 1, cache
        assert moved("promptbank_prompt_cache_lookups_total", cache=cache, result="hit") == calls - 1, cache
    assert moved("promptbank_prompt_bytes_sent_total", backbone="tiny-enc") > 0
    assert value(after, "promptbank_prompt_cache_bytes") > 0
    # training: steps timed from the job's progress events; its rate left the sum when it ended
    assert moved("promptbank_train_steps_total", backbone="tiny-enc") > 0
    assert moved("promptbank_train_step_seconds_count", backbone="tiny-enc") >= 1
    deadline = time.monotonic() + 10  # the scheduler lets go of a job just after its end is committed
    while value(obs.scrape(), "promptbank_train_examples_per_second", backbone="tiny-enc") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert value(obs.scrape(), "promptbank_train_examples_per_second", backbone="tiny-enc") == 0
    # the bank: reads and writes timed; the missing prompt is a refused read
    assert moved("promptbank_bank_query_seconds_count", kind="write", outcome="ok") > 0
    assert moved("promptbank_bank_query_seconds_count", kind="read", outcome="ok") > 0
    assert moved("promptbank_bank_query_seconds_count", kind="read", outcome="refused") >= 1
    assert value(after, "promptbank_replicas", backbone="tiny-enc", state="live") == 1
    # jobs by state come from the bank (read at most every few seconds)
    deadline = time.monotonic() + 15
    while value(samples := obs.scrape(), "promptbank_jobs", state="SUCCEEDED") < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert value(samples, "promptbank_jobs", state="SUCCEEDED") == 1, job.name
    assert value(samples, "promptbank_jobs", state="QUEUED") == 0


def test_json_logs_name_the_rpc_and_principal_and_never_a_secret(obs: Obs) -> None:
    reader = obs.admin.create_token("obs-reader", "reader").secret
    assert reader
    with Client(obs.live.address, timeout=30, token=reader) as c:
        code, _ = code_of(lambda: c.get_prompt("obs-missing"))
        assert code is grpc.StatusCode.NOT_FOUND
        code, _ = code_of(lambda: c.create_train_job("obs-denied", "tiny-enc", [("a", "x"), ("b", "y")]))
        assert code is grpc.StatusCode.PERMISSION_DENIED
    with Client(obs.live.address, timeout=30, token=WRONG_SECRET) as c:
        code, _ = code_of(lambda: c.get_prompt("obs-missing"))
        assert code is grpc.StatusCode.UNAUTHENTICATED
    job = obs.admin.create_train_job("obs-logged", "tiny-enc", [("good", "pos"), ("bad", "neg")] * 8,
                                     hyperparameters=HP)
    obs.admin.wait_job(job.name, timeout=300)

    text = obs.lines.getvalue()
    for secret in (ADMIN_SECRET, DB_PASSWORD, WRONG_SECRET, reader):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert len(lines) > 10
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    get = f"{CATALOG}/GetPrompt"
    (miss,) = [x for x in lines if x.get("rpc") == get and "NOT_FOUND" in x["message"] and x["level"] == "INFO"
               and "obs-missing" in x["message"]]
    assert miss["principal"] == "obs-reader"
    denied = [x for x in lines if x.get("rpc") == "promptbank.v1.TrainJobs/CreateTrainJob"
              and "PERMISSION_DENIED" in x["message"]]
    assert denied and denied[0]["principal"] == "obs-reader"
    unknown = [x for x in lines if x.get("rpc") == get and "UNAUTHENTICATED" in x["message"]]
    assert unknown and all("principal" not in x for x in unknown)
    access = [x for x in lines if x["logger"] == "promptbank.rpc" and x.get("rpc") == get]
    assert {x["code"] for x in access} >= {"NOT_FOUND", "UNAUTHENTICATED"}
    assert all(x["duration_ms"] >= 0 and x["level"] == "DEBUG" for x in access)
    created = [x for x in lines if x.get("rpc") == "promptbank.v1.TrainJobs/CreateTrainJob" and x.get("code") == "OK"]
    assert created and created[-1]["job"] == job.name and created[-1]["principal"] == "admin"
    assert any(x.get("job") == job.name and "rpc" not in x for x in lines), "the scheduler's lines name the job"


def dashboard_exprs() -> list[str]:
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def test_the_dashboard_queries_only_metrics_the_server_exports(obs: Obs) -> None:
    exported: dict[str, str] = {}  # a name a query may use -> the family it belongs to
    for family in text_string_to_metric_families(obs.scrape_text()):
        for suffix in SUFFIXES.get(family.type, ()):
            exported[family.name + suffix] = family.name
    assert {"promptbank_rpcs", "promptbank_replicas", "promptbank_jobs", "promptbank_bank_query_seconds"} <= \
        set(exported.values())
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used = {name for e in exprs for name in re.findall(r"\bpromptbank_[A-Za-z0-9_:]+", e)}
    unknown = sorted(used - set(exported))
    assert not unknown, f"the dashboard queries series the server does not export: {unknown}"
    for family in ("promptbank_rpcs", "promptbank_rpc_duration_seconds", "promptbank_batch_fill_ratio",
                   "promptbank_batch_queue_rows", "promptbank_batch_queue_wait_seconds",
                   "promptbank_prompt_cache_lookups", "promptbank_replicas", "promptbank_jobs",
                   "promptbank_train_examples_per_second", "promptbank_bank_query_seconds"):
        assert any(exported[n] == family for n in used), f"no panel shows {family}"
