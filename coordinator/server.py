"""Assemble and run the coordinator: grpc.aio server, health + reflection, Ray replicas, job scheduler, and the
REST/JSON face with the web console on --http-port (coordinator/rest/), which calls the same servicers through
the same interceptors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bank import audit as audit_log
from bank import jobs as jobstore
from bank.db import safe_url
from bank.writer import BankDB, Tx
from coordinator import auth
from coordinator import convert as cv
from coordinator.api import API, SERVICES
from coordinator.autoscaler import Autoscaler
from coordinator.backbone_lifecycle import record_backbone
from coordinator.catalog_service import CatalogService
from coordinator.config import ServerConfig
from coordinator.errors import ErrorInterceptor
from coordinator.inference_service import InferenceService
from coordinator.jobs_service import JobsService
from coordinator.live_service import LiveEvaluationService
from coordinator.metrics import Metrics, RpcInterceptor, blocking_reader
from coordinator.outcome_log import OutcomeLog
from coordinator.pool import ReplicaPool, ensure_ray
from coordinator.rest.app import RestServer, start_http
from coordinator.rest.invoke import HandlerTable, Invoker
from coordinator.rest.routes import routes_of
from coordinator.scheduler import JobScheduler
from coordinator.tokens_service import TokensService, lookup
from promptbank_api.v1 import (
    auth_pb2_grpc,
    catalog_pb2_grpc,
    inference_pb2_grpc,
    jobs_pb2_grpc,
    live_pb2_grpc,
)

log = logging.getLogger("promptbank.coordinator")
NOTICE_S = 2.0  # at most this much of the grace period passes between NOT_SERVING and closing the port
SEND_BYTES = 256 << 20  # the most one response may carry unless --limit-message-bytes is larger: the SDK's receive limit


@dataclass
class Coordinator:
    """A running coordinator; `port` is the bound port (useful with port 0 in tests)."""

    config: ServerConfig
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    db: BankDB
    pool: ReplicaPool
    scheduler: JobScheduler
    inference: InferenceService
    port: int
    metrics: Metrics
    stop_metrics: Callable[[], None] | None = None  # the /metrics HTTP server, when --metrics-port is set
    autoscaler: Autoscaler | None = None  # with --max-replicas
    health_server: grpc.aio.Server | None = None  # with --health-port
    health_port: int = 0
    http: RestServer | None = None  # with --http-port

    async def stop(self) -> None:
        """Graceful: report NOT_SERVING, then within `grace_seconds` let in-flight calls finish while running
        jobs write a last checkpoint and go back to the queue; then release everything."""
        await self.health.enter_graceful_shutdown()
        if self.autoscaler is not None:
            await self.autoscaler.stop()
        grace = self.config.grace_seconds
        notice = min(NOTICE_S, grace / 5)  # still serving while load balancers see NOT_SERVING and steer away

        async def close_port() -> None:
            await asyncio.sleep(notice)
            await asyncio.gather(self.server.stop(grace - notice), *([self.http.stop()] if self.http else []))

        await asyncio.gather(close_port(), self.scheduler.drain(grace))
        await self.inference.close()
        if self.stop_metrics is not None:
            await asyncio.to_thread(self.stop_metrics)  # joins the HTTP thread: not on the loop
        self.pool.shutdown()
        self.db.close()
        if self.health_server is not None:  # NOT_SERVING there until the very end
            await self.health_server.stop(0)


def instance_id() -> str:
    """This coordinator process among all on the bank: the owner of its job leases (host, pid, a random part)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    """The listening port: TLS through grpc's own credentials when a certificate is configured, mutual TLS
    when a client CA is too; plaintext otherwise (ServerConfig allows that only on loopback or --insecure)."""
    address = f"{config.host}:{config.port}"
    if not config.tls:
        return _listen(lambda: server.add_insecure_port(address), address, "--port")

    def read(path: str) -> bytes:
        return Path(path).read_bytes()

    creds = grpc.ssl_server_credentials(
        [(read(config.tls_key), read(config.tls_cert))],
        root_certificates=read(config.tls_client_ca) if config.tls_client_ca else None,
        require_client_auth=bool(config.tls_client_ca),
    )
    return _listen(lambda: server.add_secure_port(address, creds), address, "--port")


def _listen(add: Callable[[], int], address: str, flag: str) -> int:
    """grpc's add_*_port, whose failure (a RuntimeError, or port 0) becomes an OSError naming the address."""
    try:
        port = add()
    except RuntimeError as exc:
        raise OSError(f"could not bind {address} ({flag}): {exc}") from None
    if port == 0:
        raise OSError(f"could not bind {address} ({flag})")
    return port


async def start(config: ServerConfig) -> Coordinator:
    """Open the bank, start Ray replicas for every backbone, register them, and start serving. A start that
    fails part-way (a taken port, a backbone that will not load) releases what it had taken, last taken first:
    a process that goes on (a test, a retrying supervisor) keeps no port, replica or bank connection of a
    coordinator that never served."""
    config = config.with_default_backbone()
    async with contextlib.AsyncExitStack() as undo:
        coord = await _assemble(config, undo)
        undo.pop_all()  # it serves: from here on `Coordinator.stop` releases everything
        return coord


async def _assemble(config: ServerConfig, undo: contextlib.AsyncExitStack) -> Coordinator:
    metrics = Metrics()
    db = BankDB(config.db, config.db_password, observe=metrics.bank_query)
    undo.callback(db.close)
    ensure_ray(config.ray_address, config.host)
    pool = ReplicaPool(config, metrics)
    undo.callback(pool.shutdown)
    pool.generation.start()  # polls the replicas' generation engines (metrics, autoscaler)
    for spec in config.backbones:
        info = await pool.add(spec)
        await db.run(record_backbone, spec, info)
    scheduler = JobScheduler(db, pool, owner=instance_id(), lease_s=config.job_lease_s,
                             max_group=config.train_max_group, max_attempts=config.train_max_attempts,
                             gather_s=config.train_gather_s, metrics=metrics)

    opts = [("grpc.max_receive_message_length", config.limits.message_bytes),  # sized in coordinator/limits.py
            ("grpc.max_send_message_length", max(SEND_BYTES, config.limits.message_bytes)),
            ("grpc.so_reuseport", 0)]  # a second server on a taken port must fail, not share it
    verifier = None
    if config.auth == "tokens":
        verifier = auth.Verifier(lambda digest: lookup(db, digest), config.admin_token)

    def prune(s: Tx) -> int:
        return audit_log.prune(s, keep_days=config.audit_retention_days, keep_rows=config.audit_max_rows)

    pruned = await db.run(prune)  # rows that passed the retention while the server was down
    if pruned:
        log.info("audit log: deleted %d event(s) past the retention", pruned)

    async def audit(who: auth.Principal, rpc: str, resource: str) -> None:
        def q(s: Tx) -> None:  # the event and the retention in one transaction
            audit_log.record_write(s, who.name, rpc, resource)
            prune(s)

        await db.run(q)

    # outermost first: metrics see the status the error and auth interceptors decided
    chain = [RpcInterceptor(metrics), ErrorInterceptor(), auth.AuthInterceptor(verifier, audit)]
    server = grpc.aio.server(interceptors=chain, options=opts)
    undo.push_async_callback(server.stop, None)
    table = HandlerTable(server)  # the services' handlers, kept for the REST face
    # The generated add_* functions call only the two add_*_handlers methods, which the table has and passes on
    # to the server; their stubs name a whole server.
    as_server = cast(grpc.aio.Server, table)
    auth_pb2_grpc.add_TokensServicer_to_server(TokensService(db, verifier, cv.page_bytes(config.limits)), as_server)
    catalog_pb2_grpc.add_PromptCatalogServicer_to_server(CatalogService(db, pool, config, scheduler), as_server)
    jobs_pb2_grpc.add_TrainJobsServicer_to_server(JobsService(db, pool, scheduler, config), as_server)
    outcome_log = (OutcomeLog(db, config.outcome_retention_days, config.outcome_max_rows, metrics.served_rows_dropped.inc)
                   if config.outcomes else None)
    inference = InferenceService(db, pool, config, metrics, outcome_log)
    inference_pb2_grpc.add_InferenceServicer_to_server(inference, as_server)
    undo.push_async_callback(inference.close)
    live_pb2_grpc.add_LiveEvaluationServicer_to_server(LiveEvaluationService(db, config, outcome_log, metrics), as_server)
    if outcome_log is not None:
        outcome_log.start()  # inference.close() writes its last rows and stops it
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = bind(server, config)
    metrics.watch(pool, inference.tensors,
                  blocking_reader(asyncio.get_running_loop(), lambda: db.read(jobstore.count_by_state)))
    stop_metrics = None
    if config.metrics_port:
        try:
            stop_metrics = metrics.serve(config.host, config.metrics_port)
        except OSError as exc:
            raise OSError(f"could not serve metrics on {config.host}:{config.metrics_port}: {exc}") from exc
        undo.push_async_callback(asyncio.to_thread, stop_metrics)
    http = None
    if config.http_port is not None:
        http = await start_http(config, Invoker(table, chain), routes_of(API), lambda: pool.backbones.keys())
        undo.push_async_callback(http.stop)
    await server.start()
    await scheduler.start()
    undo.push_async_callback(scheduler.drain, 0.0)
    autoscaler = None
    if config.max_replicas:
        autoscaler = Autoscaler(pool, inference, config)
        autoscaler.start()
        undo.push_async_callback(autoscaler.stop)
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_server, health_port = await health_only(health_servicer, config) if config.health_port else (None, 0)
    log.info("promptbank coordinator %s on %s:%d (db %s)%s", scheduler.owner, config.host, port, safe_url(config.db),
             f"; metrics on http://{config.host}:{config.metrics_port}/metrics" if config.metrics_port else "")
    return Coordinator(config, server, health_servicer, db, pool, scheduler, inference, port, metrics, stop_metrics,
                       autoscaler, health_server, health_port, http)


async def health_only(servicer: health.aio.HealthServicer, config: ServerConfig) -> tuple[grpc.aio.Server, int]:
    """grpc.health.v1 alone, in plaintext, on --health-port: what Kubernetes' built-in gRPC probe can dial (it
    speaks no TLS). It shares the main server's health servicer, so it says NOT_SERVING from the first moment
    of a graceful shutdown; it answers nothing else and carries no data."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"{config.host}:{config.health_port}"
    port = _listen(lambda: server.add_insecure_port(address), address, "--health-port")
    await server.start()
    return server, port


async def serve_forever(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    coord = await start(config)
    print(f"promptbank serving on {config.host}:{coord.port} (db: {safe_url(config.db)})", flush=True)
    if config.auth == "none":
        print("auth: none (loopback only): every local caller is an admin; use --auth tokens to require tokens",
              flush=True)
    else:
        print(f"auth: bearer tokens{' (an admin token was given)' if config.admin_token else ''}", flush=True)
    if config.tls:
        print(f"tls: on{' (mutual: clients need a certificate signed by --tls-client-ca)' if config.tls_client_ca else ''}",
              flush=True)
    if coord.http is not None:
        print(f"console and REST/JSON: {coord.http.url} (API under {coord.http.url}v1/, "
              f"OpenAPI at {coord.http.url}openapi.json)", flush=True)
    if config.metrics_port:
        print(f"metrics: http://{config.host}:{config.metrics_port}/metrics (plain HTTP, no auth)", flush=True)
    if config.insecure:
        print(f"WARNING: --insecure: {config.host}:{coord.port} serves plaintext gRPC"
              f"{' with no authentication' if config.auth == 'none' else ''} beyond this machine", flush=True)
    if ready:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await coord.stop()
