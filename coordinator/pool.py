"""Ray replicas per backbone: start actors, route work to the least-loaded live one (preferring cached prompts),
and ride out a replica's death: a Classify moves to another replica, or waits (bounded) for Ray to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray._private import ray_constants
from ray.actor import ActorHandle
from ray.exceptions import ActorDiedError, RayActorError

from coordinator.capacity import offers, plan_gpus
from coordinator.config import PLACEMENTS, BackboneSpec, ServerConfig, is_loopback
from coordinator.errors import root_cause
from coordinator.generation import GenerationMonitor, stream, unique_id
from coordinator.metrics import Metrics
from coordinator.worker_client import WorkerClient
from promptbank_api.errors import FailedPrecondition, Unavailable
from promptbank_domain.states import ReplicaState
from promptbank_domain.task import TaskSpec
from workers.actor import BackboneWorker
from workers.protocol import (
    BackboneInfo,
    CheckTaskRequest,
    ClassifyBatch,
    GeneratePiece,
    GenerateRequest,
    MissingPrompts,
)

log = logging.getLogger("promptbank.coordinator")
MAX_RESTARTS = 3  # Ray restarts a dead replica this often, reloading its model; then it stays dead
# Each replica's environment. oneDNN (torch's CPU kernels) caches a compiled primitive per input shape, up to
# 1,024 of them; mixed-task batches come in endless (rows, length) shapes, so a replica's memory grew by a third
# over a 10,000-request soak. With no cache it stays flat for ~4% of CPU throughput (docs/benchmarks.md, soak).
# glibc gives each of a replica's call threads a malloc arena of its own, where freed batch tensors fragment;
# two arenas bound that. A variable already set in the coordinator's environment wins.
REPLICA_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0", "MALLOC_ARENA_MAX": "2"}
_CLUSTERS_ENV = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR  # "0": Ray's node address is loopback
RESTART_WAIT_S = 120.0  # how long work waits for a dead replica to come back when no other replica is live


@dataclass
class Replica:
    """One actor and what the coordinator knows of it."""

    worker: WorkerClient
    index: int
    backbone: str = ""
    outstanding: int = 0  # in-flight inference calls
    batches: int = 0  # inference batches routed here (logs, tests)
    training: set[str] = field(default_factory=set)  # job ids running here
    sent: set[str] = field(default_factory=set)  # prompt hashes this replica has been given
    state: ReplicaState = ReplicaState.LIVE
    node_id: str = ""  # the Ray node it runs on (again after a restart)
    last_used: float = field(default_factory=time.monotonic)  # last batch or job sent here (scale-down)
    _reviving: asyncio.Task[bool] | None = field(default=None, repr=False)

    @property
    def live(self) -> bool:
        return self.state is ReplicaState.LIVE

    @property
    def handle(self) -> ActorHandle[BackboneWorker]:
        """The raw Ray actor handle (tests inject faults with it; calls go through `worker`)."""
        return self.worker.handle

    @property
    def load(self) -> int:
        return self.outstanding + 4 * len(self.training)


@dataclass
class BackboneReplicas:
    spec: BackboneSpec
    info: BackboneInfo
    replicas: list[Replica]
    retired: bool = False  # deregistered: its replicas are stopped and a replica starting now is stopped too


def ensure_ray(address: str, host: str) -> None:
    """Join the cluster at `address`, or start a local Ray when none is given (and none is running): on loopback
    only when the coordinator itself serves only loopback (`host`), so no other machine reaches its Ray."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    with _loopback_node(is_loopback(host)):
        ray.init(include_dashboard=False, log_to_driver=False)


@contextlib.contextmanager
def _loopback_node(on: bool) -> Iterator[None]:
    """While a local Ray starts, have it take 127.0.0.1 as the node's address, which its GCS, raylet, object
    manager, agents and workers then listen on. This Ray has no bind flag (`ray.init(_node_ip_address=
    "127.0.0.1")` is rewritten to the outward address); it takes loopback when clusters are off, as on macOS:
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read once at `import ray`, so its module copy is set too, and the
    variable reaches the processes Ray starts. tests/test_hostile_identity.py checks the listening sockets."""
    if not on:
        yield
        return
    before_env, before = os.environ.get(_CLUSTERS_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTERS_ENV], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(_CLUSTERS_ENV, None)
        else:
            os.environ[_CLUSTERS_ENV] = before_env


class ReplicaPool:
    """All backbones this coordinator serves, each with its Ray actors."""

    def __init__(self, config: ServerConfig, metrics: Metrics | None = None):
        self.config = config
        self.metrics = metrics or Metrics()
        self.backbones: dict[str, BackboneReplicas] = {}
        self.generation = GenerationMonitor(self, self.metrics.generation)  # started by the server
        self._gpus: dict[str, float] = {}  # GPUs per replica of each backbone, as capacity.plan_gpus chose

    def demand(self, spec: BackboneSpec | None = None) -> dict[str, float]:
        """Ray resources one replica asks for: --worker-cpus (1 by default) and --worker-gpus (by default one
        GPU when the cluster has any: a cluster that only gains GPU nodes later needs --worker-gpus set; `auto`:
        the fewest that hold `spec`'s footprint, coordinator/capacity.py)."""
        gpus = self.config.worker_gpus
        if spec is not None:
            gpus = self._gpus.get(spec.name, gpus)
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        return {"CPU": self.config.worker_cpus or 1.0, "GPU": gpus, **dict(self.config.worker_resources)}

    def _actor_options(self, spec: BackboneSpec) -> dict[str, Any]:
        need = self.demand(spec)
        return {"max_concurrency": 8, "max_restarts": MAX_RESTARTS, "num_cpus": need.pop("CPU"),
                "num_gpus": need.pop("GPU"), "resources": need,
                "scheduling_strategy": PLACEMENTS[self.config.placement],
                "runtime_env": {"env_vars": {k: os.environ.get(k, v) for k, v in REPLICA_ENV.items()}}}

    async def _start(self, spec: BackboneSpec, n: int) -> list[tuple[WorkerClient, BackboneInfo]]:
        """Start `n` actors of a backbone and wait until each has loaded its model. One that Ray cannot place
        (or that cannot load) within --placement-timeout is killed with the others, and the error says why. A
        backbone whose footprint cannot fit the nodes is refused before any actor starts."""
        self._gpus[spec.name] = plan_gpus(replace(spec, replicas=n), self.config, offers())
        options = self._actor_options(spec)
        workers = [WorkerClient.start(spec.model, spec.revision, options, self.config.generation, spec.dtype)
                   for _ in range(n)]
        timeout = self.config.placement_timeout_s
        try:
            infos = await asyncio.wait_for(asyncio.gather(*[w.info() for w in workers]), timeout)
        except Exception as exc:
            for w in workers:
                w.kill()
            if isinstance(exc, TimeoutError):
                raise FailedPrecondition(self._unplaced(spec, n, timeout)) from None
            raise FailedPrecondition(f"backbone {spec.name!r} ({spec.model}) failed to load: {root_cause(exc)}") from exc
        return list(zip(workers, infos, strict=True))

    def _unplaced(self, spec: BackboneSpec, n: int, timeout: float) -> str:
        need = {k: v for k, v in self.demand(spec).items() if v}
        free = ray.available_resources()
        nodes = [{k: n.get("Resources", {}).get(k, 0) for k in need} for n in ray.nodes() if n.get("Alive")]
        return (f"Ray could not place {n} replica(s) of backbone {spec.name!r} within {timeout:g} s "
                f"(--placement-timeout): each needs {_fmt(need)} on one node; the cluster's nodes have "
                f"{', '.join(_fmt(x) for x in nodes) or 'none'}, of which {_fmt({k: free.get(k, 0) for k in need})} "
                f"is free. Lower --worker-cpus/--worker-gpus or --replicas, or add nodes")

    async def add(self, spec: BackboneSpec) -> BackboneInfo:
        """Start `spec.replicas` actors for a backbone and return its info (architecture, fingerprint, ...)."""
        started = await self._start(spec, spec.replicas)
        infos = [i for _, i in started]
        if len({i.fingerprint for i in infos}) != 1:
            for w, _ in started:
                w.kill()
            raise FailedPrecondition(f"replicas of backbone {spec.name!r} loaded different weights")
        reps = [Replica(w, i, spec.name, node_id=info.node_id) for i, (w, info) in enumerate(started)]
        self.backbones[spec.name] = BackboneReplicas(spec, infos[0], reps)
        self.metrics.backbone(spec.name)
        log.info("backbone %s: %d replica(s) on node(s) %s, %s", spec.name, spec.replicas,
                 sorted({r.node_id[:8] for r in reps}), infos[0])
        return infos[0]

    async def grow(self, name: str) -> Replica:
        """One more replica of a served backbone (autoscaling); FAILED_PRECONDITION when Ray cannot place it."""
        bb = self.get(name)
        (worker, info), = await self._start(bb.spec, 1)
        if bb.retired or self.backbones.get(name) is not bb:  # deregistered while it started
            worker.kill()
            raise FailedPrecondition(f"backbone {name!r} was deregistered while a replica of it started")
        if info.fingerprint != bb.info.fingerprint:
            worker.kill()
            raise FailedPrecondition(f"a new replica of backbone {name!r} loaded different weights")
        rep = Replica(worker, max((r.index for r in bb.replicas), default=-1) + 1, name, node_id=info.node_id)
        bb.replicas.append(rep)
        log.info("backbone %s: replica %d added on node %s (%d now)", name, rep.index, rep.node_id[:8],
                 len(bb.replicas))
        return rep

    def shrink(self, name: str, rep: Replica) -> None:
        """Remove an idle replica (autoscaling): no call or job is on it, so nothing is lost."""
        bb = self.get(name)
        if rep.outstanding or rep.training or rep not in bb.replicas:
            return
        bb.replicas.remove(rep)
        rep.worker.kill()
        log.info("backbone %s: idle replica %d removed (%d now)", name, rep.index, len(bb.replicas))

    def detach(self, name: str) -> BackboneReplicas:
        """Stop routing anything to a backbone (the first step of deregistering it): calls and jobs already on
        its replicas go on; new ones find it not served. `attach` undoes it."""
        bb = self.get(name)
        del self.backbones[name]
        return bb

    def attach(self, bb: BackboneReplicas) -> None:
        """Serve a detached backbone again (its deregistration was refused after all)."""
        self.backbones[bb.spec.name] = bb

    def get(self, name: str) -> BackboneReplicas:
        if name not in self.backbones:
            served = sorted(self.backbones) or ["none"]
            raise FailedPrecondition(f"backbone {name!r} is not served by this coordinator (serving: {', '.join(served)})")
        return self.backbones[name]

    def pick(self, name: str, prompt_keys: AbstractSet[str] = frozenset(), exclude: AbstractSet[int] = frozenset()
             ) -> Replica:
        """Among the least-loaded live replicas (within one call of the minimum), the one holding most of the
        prompts."""
        reps = [r for r in self.get(name).replicas if r.live and r.index not in exclude]
        if not reps:
            raise Unavailable(self._down(name))
        floor = min(r.load for r in reps)
        near = [r for r in reps if r.load <= floor + 1]
        return min(near, key=lambda r: (-len(prompt_keys & r.sent), r.load, r.index))

    def _down(self, name: str) -> str:
        reps = self.get(name).replicas
        states = ", ".join(f"replica {r.index} {r.state}" for r in reps)
        if any(r.state is ReplicaState.RESTARTING for r in reps):
            return f"backbone {name!r} has no live replica ({states}); retry shortly"
        return (f"backbone {name!r} has no live replica ({states}): Ray gave up restarting them; another "
                "coordinator, or this one restarted, serves it")

    def died(self, rep: Replica) -> asyncio.Task[bool]:
        """Ray reported the replica's actor dead: route around it until it answers again (a background probe).
        Returns the probe, which ends True once the replica is back, False when Ray gave up on it."""
        if rep._reviving is None or rep._reviving.done():
            if rep.live:
                log.warning("replica %d died; Ray restarts it up to %d times", rep.index, MAX_RESTARTS)
                rep.state = ReplicaState.RESTARTING
            rep.sent.clear()  # a restarted actor holds no prompts
            rep._reviving = asyncio.create_task(self._revive(rep), name=f"revive-{rep.index}")
        return rep._reviving

    async def _revive(self, rep: Replica) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTART_WAIT_S
        while loop.time() < deadline:
            try:
                info = await asyncio.wait_for(rep.worker.info(), timeout=max(deadline - loop.time(), 0.1))
                rep.state, rep.node_id = ReplicaState.LIVE, info.node_id
                log.info("replica %d is back, on node %s (pid %d)", rep.index, rep.node_id[:8], info.pid)
                return True
            except ActorDiedError:
                break
            except RayActorError:  # unavailable: still restarting
                await asyncio.sleep(0.5)
            except TimeoutError:
                break
        rep.state = ReplicaState.DEAD
        log.error("replica %d is dead: Ray gave up restarting it", rep.index)
        return False

    async def wait_alive(self, rep: Replica) -> bool:
        """After a replica died: wait (bounded) until Ray has restarted it and its model is loaded again."""
        return await self.died(rep) if not rep.live else True

    def replica_count(self, name: str) -> int:
        """Replicas of a backbone in any state (the micro-batcher sizes its in-flight batches by it); 0 when it is
        not served (deregistered): its batcher then hands each request the call's FAILED_PRECONDITION."""
        bb = self.backbones.get(name)
        return len(bb.replicas) if bb is not None else 0

    async def classify(self, name: str, batch: ClassifyBatch) -> list[list[float]]:
        """Run a batch (`batch.prompts` holds every row's prompt bytes) on one replica. A replica that dies under
        the call is routed around: the rows run again on another live replica, or on this one once Ray has
        restarted it; UNAVAILABLE when neither happens."""
        tried: set[int] = set()
        deaths = 0
        while True:
            try:
                rep = self.pick(name, {k for k, _ in batch.rows}, exclude=tried)
            except Unavailable:
                reps = self.get(name).replicas
                if any(r.live for r in reps):  # only replicas tried in this call are live: they are back
                    tried.clear()
                    continue
                waiting = [r for r in reps if r.state is ReplicaState.RESTARTING]
                if not waiting or not await self.wait_alive(waiting[0]):
                    raise
                continue
            try:
                return await self._classify_on(rep, batch)
            except RayActorError as exc:
                self.died(rep)
                tried.add(rep.index)
                deaths += 1
                if deaths > len(self.get(name).replicas):
                    raise Unavailable(f"backbone {name!r}: replicas kept dying under the call ({exc}); retry") from exc

    @contextlib.contextmanager
    def _in_flight(self, rep: Replica) -> Iterator[None]:
        """One inference call on `rep`: counted in its load while it runs, and as use (scale-down)."""
        rep.outstanding += 1
        rep.last_used = time.monotonic()
        try:
            yield
        finally:
            rep.outstanding -= 1

    async def _classify_on(self, rep: Replica, batch: ClassifyBatch) -> list[list[float]]:
        """Sends only the prompt bytes the replica has not been given (resent if evicted)."""
        keys = {k for k, _ in batch.rows}
        rep.batches += 1
        sent = self.metrics.bytes_sent.labels(rep.backbone)
        with self._in_flight(rep):
            send = {k: batch.prompts[k] for k in keys - rep.sent}
            self.metrics.lookups("replica", len(keys) - len(send), len(send))
            sent.inc(sum(map(len, send.values())))
            try:
                out = await rep.worker.classify(replace(batch, prompts=send))
            except Exception as exc:
                cause = root_cause(exc)
                if not isinstance(cause, MissingPrompts):
                    raise
                rep.sent -= set(cause.keys)  # evicted from the replica's LRU: send again
                self.metrics.lookups("replica", 0, len(cause.keys))  # (they counted as hits a moment ago)
                sent.inc(sum(len(batch.prompts[k]) for k in keys))
                out = await rep.worker.classify(replace(batch, prompts={k: batch.prompts[k] for k in keys}))
        rep.sent |= keys
        return out

    async def generate(self, name: str, req: GenerateRequest) -> AsyncGenerator[GeneratePiece, None]:
        """Stream a generation from one replica (its prompt bytes always travel along). A replica that dies
        mid-stream cannot be continued elsewhere: UNAVAILABLE, to retry the whole request. Closing the stream
        early (the caller went) tells the replica to drop the row (coordinator/generation.py)."""
        rep = self.pick(name, {req.key} - {""})
        req = replace(req, request_id=unique_id(req.request_id))
        with self._in_flight(rep):
            try:
                async with contextlib.aclosing(stream(rep.worker, name, req, self.metrics.generation)) as pieces:
                    async for piece in pieces:
                        yield piece
            except RayActorError as exc:
                self.died(rep)
                raise Unavailable(f"the replica generating on backbone {name!r} died; retry the request") from exc
        if req.key:
            rep.sent.add(req.key)

    async def check_task(self, name: str, task: TaskSpec) -> None:
        await self.pick(name).worker.check_task(CheckTaskRequest(task))

    def shutdown(self) -> None:
        self.generation.stop()
        for bb in self.backbones.values():
            for r in bb.replicas:
                r.worker.kill()
        self.backbones.clear()


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"
