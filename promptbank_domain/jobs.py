"""A train job: its spec as stored with its row (`JobSpec`, the one reader and writer of `Job.spec`'s JSON),
and the read models the bank returns about jobs, their events and checkpoints.

Bump `SPEC_VERSION` when a stored field changes meaning; `JobSpec.from_json` reads older ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from promptbank_api.errors import InvalidArgument
from promptbank_domain.states import JobState
from promptbank_domain.task import TaskSpec
from promptbank_domain.train_config import TrainConfig

SPEC_VERSION = 1


@dataclass(frozen=True)
class JobSpec:
    """A train job as stored with its row: the task, the validated hyperparameters and where things came from."""

    task: TaskSpec
    config: TrainConfig
    aliases: tuple[str, ...] = ()
    init_from: str = ""  # a stored-version reference or "nearest" to start from; "" = `config.init`
    init: str = ""  # how the prompt actually started, for lineage ("vocab", "nearest:prompts/x/versions/2 ...")
    data_ref: str = ""  # where the examples came from, for lineage ("inline:N rows", "datasets/ID", a URI)
    version: int = SPEC_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "task": self.task.to_dict(), "config": self.config.to_dict(),
                "aliases": list(self.aliases), "init_from": self.init_from, "init": self.init or self.init_from
                or self.config.init, "data_ref": self.data_ref}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobSpec:
        """Read a stored spec (any version so far: version 0 had no `version` key and the same fields)."""
        version = int(d.get("version", 0))
        if version > SPEC_VERSION:
            raise InvalidArgument(f"job spec version {version} is newer than this promptbank ({SPEC_VERSION})")
        return cls(task=TaskSpec.from_dict(d["task"]), config=TrainConfig.from_dict(d.get("config", {})),
                   aliases=tuple(d.get("aliases", ())), init_from=d.get("init_from", ""), init=d.get("init", ""),
                   data_ref=d.get("data_ref", ""), version=SPEC_VERSION)


@dataclass(frozen=True)
class JobRecord:
    """A train job as the bank holds it (its examples and lease expiry stay in the bank)."""

    id: str
    prompt_name: str
    backbone_name: str
    spec: JobSpec
    state: JobState
    step: int = 0
    total_steps: int = 0
    loss: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    result_version: str = ""
    cancel_requested: bool = False
    attempts: int = 0  # dispatches so far
    lease_owner: str = ""  # the coordinator running it (RUNNING only)
    principal: str = ""  # who submitted it
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class JobEventRecord:
    """One event of a job (state change, progress, eval, log); WatchTrainJob replays these."""

    job_id: str
    sequence: int
    kind: str  # STATE_CHANGED | PROGRESS | EVAL | LOG
    state: JobState
    step: int = 0
    total_steps: int = 0
    loss: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    examples_per_second: float = 0.0
    eta_seconds: float = 0.0
    message: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class CheckpointRecord:
    """A job's stored training state at a step (safetensors bytes)."""

    step: int
    data: bytes
