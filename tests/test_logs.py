"""Log lines and metrics without a server: the JSON format, the secret scrubber, the flags, the collectors.
(tests/test_metrics.py checks them on a running coordinator.)"""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from coordinator import logs
from coordinator.__main__ import parse
from coordinator.config import ServerConfig
from coordinator.metrics import Metrics, blocking_reader

SECRET, PASSWORD = "tok-9b1e-secret", "pw-77c4-secret"


def emit(fmt: str, secrets: tuple[str, ...], fn) -> str:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    logger = logging.getLogger("promptbank.test-logs")
    h = logs.handler(fmt, secrets, stream=buf)
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        fn(logger)
    finally:
        logger.removeHandler(h)
    return buf.getvalue()


def test_secrets_never_reach_a_line_in_either_format() -> None:
    def write(log: logging.Logger) -> None:
        log.info("admin token %s and password %s", SECRET, PASSWORD)
        log.info("header authorization: Bearer some-live-token-abc")
        log.info("db postgresql://bank:hunter2-url-pw@db:5432/bank")
        log.info("extra field", extra={"detail": f"x{SECRET}x"})
        try:
            raise ValueError(f"failed with {PASSWORD}")
        except ValueError:
            log.exception("boom")

    for fmt in logs.FORMATS:
        out = emit(fmt, (SECRET, PASSWORD), write)
        for leaked in (SECRET, PASSWORD, "some-live-token-abc", "hunter2-url-pw"):
            assert leaked not in out, (fmt, leaked)
        assert out.count(logs.MASK) >= 5 and "ValueError: failed with ***" in out
        assert "postgresql://bank:***@db:5432/bank" in out and "Bearer ***" in out


def test_json_lines_carry_the_call_when_there_is_one() -> None:
    def write(log: logging.Logger) -> None:
        log.info("outside")
        token = logs.call.set(logs.Call("promptbank.v1.TrainJobs/GetTrainJob", request_id="r-1", job="jobs/j1"))
        try:
            logs.note_principal("ci")
            log.warning("inside %d", 7, extra={"code": "OK", "duration_ms": 1.5})
        finally:
            logs.call.reset(token)
        token = logs.job.set("jobs/j2")
        log.info("scheduler")
        logs.job.reset(token)

    outside, inside, scheduler = (json.loads(line) for line in emit("json", (), write).splitlines())
    assert set(outside) == {"time", "level", "logger", "message"} and outside["message"] == "outside"
    assert inside == {**inside, "level": "WARNING", "logger": "promptbank.test-logs", "message": "inside 7",
                      "rpc": "promptbank.v1.TrainJobs/GetTrainJob", "principal": "ci", "request_id": "r-1",
                      "job": "jobs/j1", "code": "OK", "duration_ms": 1.5}
    assert inside["time"].endswith("+00:00")
    assert scheduler["job"] == "jobs/j2" and "rpc" not in scheduler


def test_metrics_and_log_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--port", "5005", "--backbone", "x=/nonexistent"]
    monkeypatch.delenv("PROMPTBANK_METRICS_PORT", raising=False)
    monkeypatch.delenv("PROMPTBANK_LOG_FORMAT", raising=False)
    cfg = parse(base)
    assert (cfg.metrics_port, cfg.log_format) == (0, "text")
    cfg = parse([*base, "--metrics-port", "9464", "--log-format", "json"])
    assert (cfg.metrics_port, cfg.log_format) == (9464, "json")
    monkeypatch.setenv("PROMPTBANK_METRICS_PORT", "9100")
    monkeypatch.setenv("PROMPTBANK_LOG_FORMAT", "json")
    assert (parse(base).metrics_port, parse(base).log_format) == (9100, "json")
    for bad in (["--metrics-port", "70000"], ["--metrics-port", "5005"], ["--metrics-port", "x"],
                ["--log-format", "xml"]):
        with pytest.raises(SystemExit):
            parse([*base, *bad])
    monkeypatch.setenv("PROMPTBANK_LOG_FORMAT", "yaml")
    with pytest.raises(SystemExit):
        parse(base)
    with pytest.raises(ValueError, match="metrics-port"):
        ServerConfig(port=1, metrics_port=-1)


def scrape(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(generate_latest(m.registry).decode()) for s in f.samples}


def test_training_rates_sum_running_jobs_and_steps_are_timed() -> None:
    m = Metrics()
    m.train_progress("a", "bb", 5, 100.0)
    m.train_progress("b", "bb", 5, 50.0)
    m.train_progress("a", "bb", 10, 120.0)
    out = scrape(m)
    assert out[("promptbank_train_examples_per_second", (("backbone", "bb"),))] == 170.0
    assert out[("promptbank_train_steps_total", (("backbone", "bb"),))] == 5  # the first event of a job is a baseline
    assert out[("promptbank_train_step_seconds_count", (("backbone", "bb"),))] == 1
    m.train_ended("a")
    m.train_ended("b")
    assert ("promptbank_train_examples_per_second", (("backbone", "bb"),)) not in scrape(m)


def test_jobs_by_state_are_cached_and_left_out_when_unreadable() -> None:
    m = Metrics()
    calls: list[int] = []

    def counts() -> dict[str, int]:
        calls.append(1)
        if len(calls) > 1:
            raise TimeoutError("the bank is slow")
        return {"RUNNING": 2}

    m.watch(None, None, counts)  # type: ignore[arg-type]
    out = scrape(m)
    assert out[("promptbank_jobs", (("state", "RUNNING"),))] == 2 and out[("promptbank_jobs", (("state", "FAILED"),))] == 0
    scrape(m)
    assert len(calls) == 1  # within JOBS_TTL_S: not read again
    m._jobs_seen = (m._jobs_seen[0] - 60, m._jobs_seen[1])
    assert not any(name == "promptbank_jobs" for name, _ in scrape(m))  # unreadable: no stale numbers


def test_the_job_counts_are_never_awaited_on_the_loop_itself() -> None:
    async def count() -> dict[str, int]:
        return {"QUEUED": 1}

    async def main() -> None:
        read = blocking_reader(asyncio.get_running_loop(), count)
        with pytest.raises(RuntimeError, match="event loop"):
            read()
        assert await asyncio.to_thread(read) == {"QUEUED": 1}

    asyncio.run(main())
