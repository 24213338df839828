"""Every Ray call the coordinator makes to a replica, typed. All Ray actor calls are made here (as in Ray
Serve's `ActorReplicaWrapper`); tests/test_structure.py fails on a `.remote(` or `ray.kill` anywhere else in
coordinator/.

Each method takes and returns the types of `workers.protocol`, and `_call`/`_stream` take their argument and
result types from `BackboneWorker`'s own method, so a type checker fails here when the actor's signature and
the coordinator's call drift apart: a Ray handle's attribute is untyped, and that stays inside this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import ray
from ray import ObjectRef
from ray.actor import ActorHandle

from workers.actor import CONTROL_GROUP, GENERATE_GROUP, BackboneWorker, concurrency_groups
from workers.protocol import (
    BackboneInfo,
    CancelGenerationRequest,
    CancelRequest,
    CheckTaskRequest,
    ClassifyBatch,
    GeneratePiece,
    GenerateRequest,
    GenerationSettings,
    GenerationStats,
    InitLossesRequest,
    TrainEvent,
    TrainRequest,
)

P = ParamSpec("P")
R = TypeVar("R")


def _remote(handle: ActorHandle[BackboneWorker], name: str, group: str) -> Any:
    """The Ray method `name` of `handle`, in concurrency group `group` ("" = the default group). The group is
    named per call (`.options`), not by decorating the actor's method, which would hide its signature."""
    method = getattr(handle, name)
    return method.options(concurrency_group=group) if group else method


def _call(group: str, handle: ActorHandle[BackboneWorker], method: Callable[Concatenate[BackboneWorker, P], R],
          *args: P.args, **kwargs: P.kwargs) -> ObjectRef[R]:
    """`handle.<method>.remote(*args)`, typed as the actor's method: its arguments, and an ObjectRef of its result."""
    ref: ObjectRef[R] = _remote(handle, method.__name__, group).remote(*args, **kwargs)
    return ref


async def _stream(group: str, handle: ActorHandle[BackboneWorker],
                  method: Callable[Concatenate[BackboneWorker, P], Iterator[R]],
                  *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
    """A generator method called as a Ray streaming generator: each item as the replica yields it."""
    async for ref in _remote(handle, method.__name__, group).remote(*args, **kwargs):
        item: R = await ref
        yield item


class WorkerClient:
    """One replica: its Ray actor handle and a typed call per `BackboneWorker` method."""

    def __init__(self, handle: ActorHandle[BackboneWorker]):
        self.handle = handle  # the raw handle, for Ray's own use (tests inject faults with it)

    @classmethod
    def start(cls, model: str, revision: str, options: dict[str, Any], generation: GenerationSettings | None = None,
              dtype: str = "auto") -> WorkerClient:
        """Create the actor (it loads its model in the background; `info()` answers once it has). Generate calls
        run in a concurrency group of their own, sized by `generation` (Ray takes groups only here, not in
        `options`), so they never wait behind, nor hold up, the default group's `max_concurrency` threads."""
        groups = concurrency_groups(generation or GenerationSettings())
        handle = ray.remote(concurrency_groups=groups)(  # type: ignore[call-overload]  # ray's stubs omit the groups
            BackboneWorker).options(**options).remote(
            model, revision, generation=generation, dtype=dtype)
        if not isinstance(handle, ActorHandle):  # (Ray's stubs allow a class here too)
            raise TypeError(f"Ray started no actor: {handle!r}")
        return cls(handle)

    def kill(self, *, restart: bool = False) -> None:
        """End the actor now; `restart` lets Ray restart it (within its max_restarts)."""
        ray.kill(self.handle, no_restart=not restart)

    def info(self) -> ObjectRef[BackboneInfo]:
        return _call("", self.handle, BackboneWorker.info)

    def classify(self, batch: ClassifyBatch) -> ObjectRef[list[list[float]]]:
        return _call("", self.handle, BackboneWorker.classify, batch)

    def check_task(self, req: CheckTaskRequest) -> ObjectRef[None]:
        return _call("", self.handle, BackboneWorker.check_task, req)

    def init_losses(self, req: InitLossesRequest) -> ObjectRef[dict[str, float]]:
        return _call("", self.handle, BackboneWorker.init_losses, req)

    def cancel(self, req: CancelRequest) -> ObjectRef[None]:
        return _call("", self.handle, BackboneWorker.cancel, req)

    def train_group(self, jobs: list[TrainRequest]) -> AsyncIterator[TrainEvent]:
        return _stream("", self.handle, BackboneWorker.train_group, jobs)

    def generate(self, req: GenerateRequest) -> AsyncIterator[GeneratePiece]:
        return _stream(GENERATE_GROUP, self.handle, BackboneWorker.generate, req)

    def cancel_generation(self, req: CancelGenerationRequest) -> ObjectRef[bool]:
        return _call(CONTROL_GROUP, self.handle, BackboneWorker.cancel_generation, req)

    def generation_stats(self) -> ObjectRef[GenerationStats]:
        return _call(CONTROL_GROUP, self.handle, BackboneWorker.generation_stats)
