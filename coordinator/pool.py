"""Ray replicas per backbone: start actors, route work to the least-loaded one (preferring cached prompts)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import ray

from coordinator.config import BackboneSpec, ServerConfig
from coordinator.errors import root_cause
from promptbank_api.errors import FailedPrecondition, Unavailable
from workers.actor import BackboneWorker
from workers.protocol import BackboneInfo, ClassifyBatch, MissingPrompts
from workers.task import TaskSpec

log = logging.getLogger("promptbank.coordinator")


@dataclass
class Replica:
    """One actor and what the coordinator knows of it."""

    handle: Any
    index: int
    outstanding: int = 0  # in-flight inference calls
    batches: int = 0  # inference batches routed here (logs, tests)
    training: set[str] = field(default_factory=set)  # job ids running here
    sent: set[str] = field(default_factory=set)  # prompt hashes this replica has been given

    @property
    def load(self) -> int:
        return self.outstanding + 4 * len(self.training)


@dataclass
class BackboneReplicas:
    spec: BackboneSpec
    info: BackboneInfo
    replicas: list[Replica]


def ensure_ray(address: str) -> None:
    """Join the cluster at `address`, or start a local Ray when none is given (and none is running)."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


class ReplicaPool:
    """All backbones this coordinator serves, each with its Ray actors."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.backbones: dict[str, BackboneReplicas] = {}

    def _actor_options(self) -> dict[str, Any]:
        gpus = ray.cluster_resources().get("GPU", 0)
        opts: dict[str, Any] = {"max_concurrency": 8, "max_restarts": 3}
        if gpus > 0:
            opts["num_gpus"] = self.config.worker_gpus
        opts["num_cpus"] = self.config.worker_cpus or 1
        return opts

    async def add(self, spec: BackboneSpec) -> BackboneInfo:
        """Start `spec.replicas` actors for a backbone and return its info (architecture, fingerprint, ...)."""
        cls = ray.remote(BackboneWorker).options(**self._actor_options())
        handles = [cls.remote(spec.model, spec.revision) for _ in range(spec.replicas)]
        try:
            infos = await asyncio.gather(*[h.info.remote() for h in handles])
        except Exception as exc:
            for h in handles:
                ray.kill(h)
            raise FailedPrecondition(f"backbone {spec.name!r} ({spec.model}) failed to load: {root_cause(exc)}") from exc
        if len({i.fingerprint for i in infos}) != 1:
            raise FailedPrecondition(f"replicas of backbone {spec.name!r} loaded different weights")
        self.backbones[spec.name] = BackboneReplicas(spec, infos[0], [Replica(h, i) for i, h in enumerate(handles)])
        log.info("backbone %s: %d replica(s), %s", spec.name, spec.replicas, infos[0])
        return infos[0]

    def get(self, name: str) -> BackboneReplicas:
        if name not in self.backbones:
            served = sorted(self.backbones) or ["none"]
            raise FailedPrecondition(f"backbone {name!r} is not served by this coordinator (serving: {', '.join(served)})")
        return self.backbones[name]

    def pick(self, name: str, prompt_keys: set[str] = frozenset()) -> Replica:  # type: ignore[assignment]
        """Among the least-loaded replicas (within one call of the minimum), the one holding most of the prompts."""
        reps = self.get(name).replicas
        if not reps:
            raise Unavailable(f"backbone {name!r} has no live replicas")
        floor = min(r.load for r in reps)
        near = [r for r in reps if r.load <= floor + 1]
        return min(near, key=lambda r: (-len(prompt_keys & r.sent), r.load, r.index))

    async def classify(
        self, name: str, rows: list[tuple[str, str]], prompts: dict[str, bytes], tasks: dict[str, TaskSpec]
    ) -> list[list[float]]:
        """Run rows on one replica, sending only the prompt bytes it has not been given (resent if evicted)."""
        keys = {k for k, _ in rows}
        rep = self.pick(name, keys)
        rep.outstanding += 1
        rep.batches += 1
        try:
            send = {k: prompts[k] for k in keys - rep.sent}
            try:
                out = await rep.handle.classify.remote(ClassifyBatch(rows, send, tasks))
            except Exception as exc:
                cause = root_cause(exc)
                if not isinstance(cause, MissingPrompts):
                    raise
                rep.sent -= set(cause.keys)  # evicted from the replica's LRU: send again
                out = await rep.handle.classify.remote(ClassifyBatch(rows, {k: prompts[k] for k in keys}, tasks))
        finally:
            rep.outstanding -= 1
        rep.sent |= keys
        return out

    async def check_task(self, name: str, task: TaskSpec) -> None:
        await self.pick(name).handle.check_task.remote(task)

    def shutdown(self) -> None:
        for bb in self.backbones.values():
            for r in bb.replicas:
                ray.kill(r.handle)
        self.backbones.clear()
