"""Prometheus metrics of one coordinator, all defined here, on its own registry (several coordinators in one
process, as in the tests, never share a series), served over HTTP on `--metrics-port`.

The services record into a `Metrics` as things happen (counters, histograms); what is state rather than an
event (replicas by state, jobs by state, cached bytes, training rates) is read when scraped, by a collector
that runs on the HTTP server's thread and never waits on the event loop for more than a bank read.
`RpcInterceptor` counts and times every RPC and opens the log context of the call (coordinator/logs.py);
RPCs that arrive over REST (coordinator/rest/) pass the same interceptor with `transport` set to "http".
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coordinator import logs
from coordinator.gen_metrics import GenerationMetrics
from coordinator.handlers import HandlerInterceptor, Stream, Unary, rewrap
from promptbank_domain.states import JobState, ReplicaState

log = logging.getLogger("promptbank.coordinator")
access = logging.getLogger("promptbank.rpc")

REPLICA_STATES = tuple(ReplicaState)  # coordinator/pool.py Replica.state
JOB_STATES = tuple(JobState)
CACHES = ("resolution", "tensor", "replica")  # see `cache` below
JOBS_TTL_S = 5.0  # the bank's job counts are read at most this often, however many scrapers there are
JOBS_TIMEOUT_S = 2.0  # a scrape waits at most this long for them; it leaves the family out after that

SECONDS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300)
SHORT = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)
ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
FILL = (.05, .1, .25, .5, .75, .9, 1.0)
transport: contextvars.ContextVar[str] = contextvars.ContextVar("transport", default="grpc")  # REST sets "http"


class Sized(Protocol):
    size: int  # workers/cache.py LRU: bytes held


class Metrics:
    """Every metric of one coordinator. Counters are exported with the `_total` suffix."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # RPCs: traffic, errors and latency per method; the status is the one the client got
        self.rpcs = Counter("promptbank_rpcs", "RPCs handled, by service, method, gRPC status code and transport "
                            "(grpc, or http for the REST face)", ["service", "method", "code", "transport"], registry=r)
        self.rpc_seconds = Histogram("promptbank_rpc_duration_seconds", "Time to answer an RPC (a stream: its life)",
                                     ["service", "method", "transport"], buckets=SECONDS, registry=r)
        # micro-batcher: how full batches ride (fill = rows / max rows) and how long rows wait for company
        self.batches = Counter("promptbank_batches", "Micro-batches sent to a replica, by outcome (ok, error)",
                               ["backbone", "outcome"], registry=r)
        self.batch_rows = Histogram("promptbank_batch_rows", "Rows per micro-batch that a replica answered",
                                    ["backbone"], buckets=ROWS, registry=r)
        self.batch_fill = Histogram("promptbank_batch_fill_ratio", "Rows per answered micro-batch / the batch's max "
                                    "rows (above 1 when one request alone has more)", ["backbone"], buckets=FILL,
                                    registry=r)
        self.queue_rows = Gauge("promptbank_batch_queue_rows", "Rows waiting in the micro-batcher for a batch",
                                ["backbone"], registry=r)
        self.queue_wait = Histogram("promptbank_batch_queue_wait_seconds", "Time a request's rows waited in the "
                                    "micro-batcher before their batch closed", ["backbone"], buckets=SHORT, registry=r)
        self.dropped_rows = Counter("promptbank_batch_dropped_rows", "Rows of callers that gave up (deadline, "
                                    "cancel) before their forward: never sent", ["backbone"], registry=r)
        self.split_retries = Counter("promptbank_batch_split_retries", "Failed batches retried request by request",
                                     ["backbone"], registry=r)
        # prompt caches: a hot prompt is never re-read from SQL nor re-sent to a replica
        self.cache = Counter("promptbank_prompt_cache_lookups", "Prompt cache lookups by cache and result: "
                             "resolution = reference to version (per coordinator), tensor = prompt bytes by hash "
                             "(a miss reads SQL), replica = the prompt already on the chosen replica (a miss "
                             "sends its bytes)", ["cache", "result"], registry=r)
        self.bytes_sent = Counter("promptbank_prompt_bytes_sent", "Prompt bytes sent to replicas",
                                  ["backbone"], registry=r)
        # live evaluation: who answered the rows of aliases with a rollout, and what came back
        self.routed_rows = Counter("promptbank_classify_routed_rows", "Classify rows by route: primary (the "
                                   "alias's version or a pinned one), canary (its canary answered), shadow (scored "
                                   "beside the answer, never returned)", ["route"], registry=r)
        self.outcome_results = Counter("promptbank_outcomes", "Outcomes sent to RecordOutcomes, by result: recorded, "
                                       "already (same label again), unknown (id never issued or past retention), "
                                       "conflicting (another label was recorded first)", ["result"], registry=r)
        self.served_rows_dropped = Counter("promptbank_served_rows_dropped", "Classified rows not kept for their "
                                           "outcome because the bank fell behind", registry=r)
        # training: steps and their time, from the jobs' progress events
        self.train_steps = Counter("promptbank_train_steps", "Training steps of jobs running here",
                                   ["backbone"], registry=r)
        self.train_step_seconds = Histogram("promptbank_train_step_seconds", "Time per training step (each "
                                            "progress event's mean over the steps since the last)", ["backbone"],
                                            buckets=SECONDS, registry=r)
        # the bank: every read and write, as the hook of bank/writer.py BankDB reports it
        self.bank_seconds = Histogram("promptbank_bank_query_seconds", "Time a bank read or write held its "
                                      "session, by kind and outcome (ok, refused: a domain error, error)",
                                      ["kind", "outcome"], buckets=SHORT, registry=r)
        self.generation = GenerationMetrics(r)  # Generate streams and the replicas' engines
        for cache in CACHES:
            for result in ("hit", "miss"):
                self.cache.labels(cache, result)
        for kind in ("read", "write"):
            self.bank_seconds.labels(kind, "ok")
        self.pool: Any = None  # set by `watch`: the ReplicaPool, the coordinator's prompt LRU, the jobs reader
        self.tensors: Sized | None = None
        self._jobs: Callable[[], dict[str, int]] | None = None
        self._jobs_seen: tuple[float, dict[str, int]] = (-JOBS_TTL_S, {})
        self._jobs_lock = threading.Lock()
        self._progress: dict[str, tuple[str, float, int, float]] = {}  # job -> (backbone, time, step, examples/s)
        r.register(_State(self))

    def watch(self, pool: Any, tensors: Sized, jobs: Callable[[], dict[str, int]]) -> None:
        """What the scrape reads: the replica pool, the prompt cache, and a (blocking) count of jobs by state."""
        self.pool, self.tensors, self._jobs = pool, tensors, jobs

    def backbone(self, name: str) -> None:
        """A backbone is served: its series exist from now on, at 0 (a rate over a missing series is no rate)."""
        for outcome in ("ok", "error"):
            self.batches.labels(name, outcome)
        for m in (self.batch_rows, self.batch_fill, self.queue_rows, self.queue_wait, self.dropped_rows,
                  self.split_retries, self.bytes_sent, self.train_steps, self.train_step_seconds):
            m.labels(name)
        self.generation.backbone(name)

    def lookups(self, cache: str, hits: int, misses: int) -> None:
        if hits:
            self.cache.labels(cache, "hit").inc(hits)
        if misses:
            self.cache.labels(cache, "miss").inc(misses)

    def bank_query(self, kind: str, seconds: float, outcome: str) -> None:
        """BankDB's hook (called on its threads)."""
        self.bank_seconds.labels(kind, outcome).observe(seconds)

    def train_progress(self, job: str, backbone: str, step: int, examples_per_second: float) -> None:
        """A PROGRESS event of a job running here: its rate, and the steps since its previous one."""
        now = time.monotonic()
        last = self._progress.get(job)
        if last is not None and step > last[2]:
            self.train_steps.labels(backbone).inc(step - last[2])
            self.train_step_seconds.labels(backbone).observe((now - last[1]) / (step - last[2]))
        self._progress[job] = (backbone, now, step, examples_per_second)

    def train_ended(self, job: str) -> None:
        """The job no longer runs here: its rate leaves the sum."""
        self._progress.pop(job, None)

    def jobs_by_state(self) -> dict[str, int] | None:
        """The bank's job counts, read at most every JOBS_TTL_S; None when they could not be read."""
        if self._jobs is None:
            return None
        with self._jobs_lock:
            seen, counts = self._jobs_seen
            if time.monotonic() - seen >= JOBS_TTL_S:
                try:
                    counts = self._jobs()
                except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the bank did
                    log.warning("metrics: cannot count jobs by state: %r", exc)
                    return None
                self._jobs_seen = (time.monotonic(), counts)
            return counts

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve /metrics on host:port from a thread; returns the function that stops it."""
        httpd, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)

        return stop


class _State(Collector):
    """Read at each scrape: state, not events."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        replicas = GaugeMetricFamily("promptbank_replicas", "Replicas (Ray actors) by backbone and state: live, "
                                     "restarting (Ray is bringing it back), dead (out of restarts)",
                                     labels=["backbone", "state"])
        rates = GaugeMetricFamily("promptbank_train_examples_per_second", "Training examples per second of the "
                                  "jobs running here, as their replicas last reported", labels=["backbone"])
        pool = m.pool
        for name, bb in list(pool.backbones.items()) if pool is not None else ():
            states = Tally(r.state for r in list(bb.replicas))
            for state in REPLICA_STATES:
                replicas.add_metric([name, state], states.get(state, 0))
        per_backbone: dict[str, float] = dict.fromkeys(list(pool.backbones) if pool is not None else (), 0.0)
        for backbone, _, _, eps in list(m._progress.values()):
            per_backbone[backbone] = per_backbone.get(backbone, 0.0) + eps
        for backbone, eps in per_backbone.items():
            rates.add_metric([backbone], eps)
        yield replicas
        yield rates
        yield GaugeMetricFamily("promptbank_prompt_cache_bytes", "Prompt bytes the coordinator holds by content hash",
                                value=m.tensors.size if m.tensors is not None else 0)
        counts = m.jobs_by_state()
        if counts is not None:
            jobs = GaugeMetricFamily("promptbank_jobs", "Jobs in the bank by state (all coordinators on it: take "
                                     "max, not sum, across coordinators)", labels=["state"])
            for job_state in dict.fromkeys((*JOB_STATES, *counts)):
                jobs.add_metric([job_state], counts.get(job_state, 0))
            yield jobs


def blocking_reader(loop: asyncio.AbstractEventLoop, read: Callable[[], Coroutine[Any, Any, dict[str, int]]]
                    ) -> Callable[[], dict[str, int]]:
    """`read()` (a coroutine through BankDB.read) run on `loop` from the scrape's thread, waited for at most
    JOBS_TIMEOUT_S; refused on the loop's own thread, where waiting would deadlock it."""

    def blocking() -> dict[str, int]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("the job counts cannot be read on the event loop's own thread")
        return asyncio.run_coroutine_threadsafe(read(), loop).result(timeout=JOBS_TIMEOUT_S)

    return blocking


def _names(request: Any, response: Any = None) -> tuple[str, str]:
    """The AIP-155 request_id and the job a call names (`jobs/<id>`), from its request or its response."""
    rid = getattr(request, "request_id", "")
    job = ""
    for msg in (request, response):
        name = getattr(msg, "name", "") if msg is not None else ""
        if isinstance(name, str) and name.startswith("jobs/"):
            job = name
    return (rid if isinstance(rid, str) else ""), job


class RpcInterceptor(HandlerInterceptor):
    """The outermost interceptor: counts and times every RPC by the status its caller got (after the error and
    auth interceptors have decided it), and opens its log context; one DEBUG line per call."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        call = logs.Call(details.method.lstrip("/"))
        token = logs.call.set(call)  # lines the auth interceptor writes already carry the call
        try:
            handler = await continuation(details)
        finally:
            logs.call.reset(token)
        return handler if handler is None else self._wrap(handler, call, transport.get())

    def _wrap(self, handler: grpc.RpcMethodHandler, call: logs.Call, via: str) -> grpc.RpcMethodHandler:
        service, _, method = call.rpc.rpartition("/")
        count, seconds = self.m.rpcs, self.m.rpc_seconds.labels(service, method, via)

        def done(began: float, code: str) -> None:
            elapsed = time.perf_counter() - began
            count.labels(service, method, code, via).inc()
            seconds.observe(elapsed)
            access.debug("%s %s %.1f ms", call.rpc, code, elapsed * 1000,
                         extra={"code": code, "duration_ms": round(elapsed * 1000, 3), "transport": via})

        def code_of(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
            if isinstance(exc, asyncio.CancelledError | GeneratorExit):
                return "CANCELLED"
            c = context.code()
            if isinstance(c, grpc.StatusCode):
                return c.name
            return "UNKNOWN" if exc is not None and not isinstance(exc, grpc.aio.AbortError) else "OK"

        def around_unary(inner: Unary) -> Unary:
            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                call.request_id, call.job = _names(request)
                token, began, failure = logs.call.set(call), time.perf_counter(), None
                try:
                    response = await inner(request, context)
                    call.job = _names(request, response)[1] or call.job
                    return response
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    done(began, code_of(context, failure))
                    logs.call.reset(token)

            return unary

        def around_stream(inner: Stream) -> Stream:
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                call.request_id, call.job = _names(request)
                token, began, failure = logs.call.set(call), time.perf_counter(), None
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    done(began, code_of(context, failure))
                    try:
                        logs.call.reset(token)
                    except ValueError:  # the stream was closed from another context
                        pass

            return stream

        return rewrap(handler, around_unary, around_stream)
