"""Assemble and run the coordinator: grpc.aio server, health + reflection, Ray replicas, job scheduler."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bank import catalog
from bank.db import safe_url
from bank.writer import BankDB
from coordinator.catalog_service import CatalogService
from coordinator.config import ServerConfig
from coordinator.errors import ErrorInterceptor
from coordinator.inference_service import InferenceService
from coordinator.jobs_service import JobsService
from coordinator.pool import ReplicaPool, ensure_ray
from coordinator.scheduler import JobScheduler
from promptbank_api.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
)

log = logging.getLogger("promptbank.coordinator")
SERVICES = (
    catalog_pb2.DESCRIPTOR.services_by_name["PromptCatalog"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["TrainJobs"].full_name,
    inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name,
)


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

    async def stop(self) -> None:
        """Graceful: report NOT_SERVING, drain in-flight calls for `grace_seconds`, then release everything."""
        await self.health.enter_graceful_shutdown()
        await self.scheduler.stop()
        await self.server.stop(self.config.grace_seconds)
        await self.inference.close()
        self.pool.shutdown()
        self.db.close()


async def start(config: ServerConfig) -> Coordinator:
    """Open the bank, start Ray replicas for every backbone, register them, and start serving."""
    config = config.with_default_backbone()
    db = BankDB(config.db)
    ensure_ray(config.ray_address)
    pool = ReplicaPool(config)
    for spec in config.backbones:
        info = await pool.add(spec)
        await db.run(lambda s, spec=spec, info=info: catalog.upsert_backbone(
            s, spec.name, model=spec.model, revision=spec.revision, architecture=info.architecture,
            hidden_size=info.hidden_size, fingerprint=info.fingerprint))
    scheduler = JobScheduler(db, pool, config.train_max_group, gather_s=config.train_gather_s)

    opts = [("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0)]  # a second server on a taken port must fail, not share it
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=opts)
    catalog_pb2_grpc.add_PromptCatalogServicer_to_server(CatalogService(db, pool), server)
    jobs_pb2_grpc.add_TrainJobsServicer_to_server(JobsService(db, pool, scheduler, config), server)
    inference = InferenceService(db, pool, config)
    inference_pb2_grpc.add_InferenceServicer_to_server(inference, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.port}")
    await server.start()
    await scheduler.start()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("promptbank coordinator on %s:%d (db %s)", config.host, port, safe_url(config.db))
    return Coordinator(config, server, health_servicer, db, pool, scheduler, inference, port)


async def serve_forever(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    coord = await start(config)
    print(f"promptbank serving on {config.host}:{coord.port} (db: {safe_url(config.db)})", flush=True)
    if ready:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await coord.stop()
