"""A train job as stored with its row (`JobSpec`: the one reader and writer of `Job.spec`'s JSON).

Bump `SPEC_VERSION` when a stored field changes meaning; `JobSpec.from_json` reads older ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptbank_api.errors import InvalidArgument
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
