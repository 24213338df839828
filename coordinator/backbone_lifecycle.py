"""A backbone's catalog entry from its replicas (at start and RegisterBackbone), and deregistering it: the
reverse of RegisterBackbone, on the answering coordinator.

The order keeps every step safe to stop at. Queued or running jobs refuse it (unless forced) before anything
changes. The backbone is then detached from the pool, so no new call or job reaches it. One transaction re-checks
the jobs (a job may have been queued meanwhile), ends them with `force`, and removes the catalog entry when no
stored version pins it; if it refuses, the backbone is attached again as it was. Last, the scheduler lets go of
the jobs it ran there, calls still on the replicas get a grace period, and the replicas are stopped, which frees
their Ray resources.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from bank import catalog
from bank import jobs as jobstore
from bank.writer import BankDB, Tx
from coordinator import convert as cv
from coordinator.config import BackboneSpec
from coordinator.pool import BackboneReplicas, ReplicaPool
from coordinator.scheduler import JobScheduler
from promptbank_api.errors import FailedPrecondition, NotFound
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_domain.catalog import BackboneRecord
from promptbank_domain.jobs import JobRecord
from promptbank_domain.states import ReplicaState
from workers.protocol import BackboneInfo

log = logging.getLogger("promptbank.coordinator")
NAMED_JOBS = 10  # jobs a refusal names; more are counted


def busy(name: str, jobs: Sequence[JobRecord]) -> str:
    """The refusal: which jobs hold the backbone, and the ways out."""
    named = ", ".join(f"jobs/{j.id} ({j.state})" for j in jobs[:NAMED_JOBS])
    more = f" and {len(jobs) - NAMED_JOBS} more" if len(jobs) > NAMED_JOBS else ""
    return (f"backbone {name!r} has {len(jobs)} train job(s) queued or running: {named}{more}; wait for them or "
            f"cancel them, or deregister with force, which ends them FAILED")


def record_backbone(s: Tx, spec: BackboneSpec, info: BackboneInfo) -> BackboneRecord:
    """Register (or refresh) a served backbone's row from what its replica reported."""
    return catalog.upsert_backbone(s, spec.name, model=spec.model, revision=spec.revision,
                                   architecture=info.architecture, hidden_size=info.hidden_size,
                                   fingerprint=info.fingerprint, deep=info.deep)


async def retire(bb: BackboneReplicas, wait_s: float) -> int:
    """Stop a detached backbone's replicas, freeing their Ray resources; calls still on them (a batch, a Generate
    stream) get up to `wait_s` seconds to finish first. Returns how many were stopped."""
    bb.retired = True
    deadline = time.monotonic() + wait_s
    while any(r.outstanding for r in bb.replicas) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for r in bb.replicas:
        r.state = ReplicaState.DEAD
        r.worker.kill()
    log.info("backbone %s deregistered: %d replica(s) stopped", bb.spec.name, len(bb.replicas))
    return len(bb.replicas)


async def deregister(db: BankDB, pool: ReplicaPool, scheduler: JobScheduler, name: str, *, force: bool, who: str,
                     wait_s: float) -> cat.DeregisterBackboneResponse:
    """DeregisterBackbone (coordinator/catalog_service.py): see the module docstring."""
    served = pool.backbones.get(name)
    known = await db.read(lambda s: catalog.find_backbone(s, name))
    if served is None and known is None:
        raise NotFound(f"backbone {name!r} not found (serving: {', '.join(sorted(pool.backbones)) or 'none'})")
    active = await db.read(lambda s: jobstore.active_on_backbone(s, name))
    if active and not force:  # refused before anything changes: its replicas keep serving
        raise FailedPrecondition(busy(name, active))
    why = f"backbone {name!r} was deregistered by {who!r} with force"

    def q(s: Tx) -> tuple[list[JobRecord], BackboneRecord | None, bool]:
        now = jobstore.active_on_backbone(s, name)
        if now and not force:
            raise FailedPrecondition(busy(name, now))
        ended = jobstore.fail_active_on_backbone(s, name, why) if now else []
        record, removed = catalog.remove_backbone(s, name)
        return ended, record, removed

    detached = pool.detach(name) if served is not None else None
    try:
        ended, record, removed = await db.run(q)
    except BaseException:
        if detached is not None:
            pool.attach(detached)
        raise
    stopped = 0
    if detached is not None:
        await scheduler.abandon(detached.replicas)
        stopped = await retire(detached, wait_s)
    if ended:
        log.warning("%s: ended %d job(s) FAILED: %s", why, len(ended), ", ".join(f"jobs/{j.id}" for j in ended))
        await scheduler.notify()  # watchers see the jobs end
    backbone = cv.backbone_to_proto(record) if record is not None else cat.Backbone(name=f"backbones/{name}")
    return cat.DeregisterBackboneResponse(backbone=backbone, removed=removed, stopped_replicas=stopped,
                                          failed_jobs=[f"jobs/{j.id}" for j in ended])
