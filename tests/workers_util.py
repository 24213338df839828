"""Test helpers for driving a worker in-process through its typed contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from promptbank_domain.task import TaskSpec
from promptbank_domain.train_config import TrainConfig
from workers.actor import BackboneWorker
from workers.protocol import ClassifyBatch, TrainEvent, TrainRequest


def task_of(task: dict[str, Any] | TaskSpec) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else TaskSpec.from_dict(task)


def train(worker: BackboneWorker, job_id: str, task: dict[str, Any] | TaskSpec, examples: list[tuple[str, str]],
          config: dict[str, Any] | TrainConfig, **kw: Any) -> Iterator[TrainEvent]:
    """`worker.train` from the dict forms the tests write their tasks and configs in."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    return worker.train(TrainRequest(job_id, task_of(task), cfg, examples, **kw))


def classify(worker: BackboneWorker, rows: list[tuple[str, str]], prompts: dict[str, bytes],
             tasks: dict[str, dict[str, Any] | TaskSpec]) -> list[list[float]]:
    """`worker.classify` from the dict forms the tests write their tasks in."""
    return worker.classify(ClassifyBatch(rows, prompts, {k: task_of(t) for k, t in tasks.items()}))
