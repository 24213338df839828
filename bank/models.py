"""SQLAlchemy 2 typed models: the whole schema of the prompt bank."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Backbone(Base):
    """A frozen model; versions pin it through `fingerprint`."""

    __tablename__ = "backbones"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(1024))
    revision: Mapped[str] = mapped_column(String(128), default="")
    architecture: Mapped[str] = mapped_column(String(32))  # encoder | causal_lm | seq2seq | masked_lm
    hidden_size: Mapped[int]
    # Where its deep prompts go (workers/deep_prompt.py): self-attention layers, key/value heads, head width;
    # 0s when its attention cannot carry them.
    deep_layers: Mapped[int] = mapped_column(default=0, server_default="0")
    deep_kv_heads: Mapped[int] = mapped_column(default=0, server_default="0")
    deep_head_dim: Mapped[int] = mapped_column(default=0, server_default="0")
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def deep_width(self) -> int:
        """Columns of its deep prompts: keys and values of every layer (0: it takes none)."""
        return self.deep_layers * 2 * self.deep_kv_heads * self.deep_head_dim


class Prompt(Base):
    """A task family: name, task spec, tags; owns immutable versions and aliases."""

    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    task: Mapped[dict[str, Any]] = mapped_column(default=dict)  # kind, labels, label_words, label_texts, description
    tags: Mapped[list[Any]] = mapped_column(default=list)
    owner: Mapped[str] = mapped_column(String(128), default="")  # a free-text display field, not a permission
    # the principal that created it: a trainer's jobs publish only to prompts it created (admins: anywhere)
    created_by: Mapped[str] = mapped_column(String(64), default="", server_default="")
    latest_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    versions: Mapped[list[PromptVersion]] = relationship(back_populates="prompt", cascade="all, delete-orphan")
    aliases: Mapped[list[Alias]] = relationship(back_populates="prompt", cascade="all, delete-orphan")


class PromptVersion(Base):
    """One immutable trained prompt: safetensors bytes plus what is needed to trust and trace them."""

    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("prompt_id", "version"),
        Index("ix_prompt_versions_backbone_prompt", "backbone_id", "prompt_id"),  # list_prompts(backbone=...)
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    backbone_id: Mapped[int] = mapped_column(ForeignKey("backbones.id"), index=True)
    backbone_fingerprint: Mapped[str] = mapped_column(String(64))
    tensor: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # loaded only when a cache misses
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    shape: Mapped[list[Any]]
    kind: Mapped[str] = mapped_column(String(16), default="input", server_default="input")  # a promptbank_kinds name
    dtype: Mapped[str] = mapped_column(String(16))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prompt: Mapped[Prompt] = relationship(back_populates="versions")
    backbone: Mapped[Backbone] = relationship()


class Alias(Base):
    """A movable name (`latest`, `prod`) pointing at one version of a prompt, with what rides behind it: a shadow
    version scored on a share of its rows, a canary answering a share of them, and the policy that promotes."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("prompt_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id", ondelete="CASCADE"))
    # a deleted candidate leaves the alias serving, without it
    shadow_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id", ondelete="SET NULL"),
                                                          default=None)
    shadow_fraction: Mapped[float] = mapped_column(default=1.0, server_default="1.0")
    canary_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id", ondelete="SET NULL"),
                                                          default=None)
    canary_fraction: Mapped[float] = mapped_column(default=0.0, server_default="0.0")
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")  # Policy.to_json()
    prompt: Mapped[Prompt] = relationship(back_populates="aliases")
    version: Mapped[PromptVersion] = relationship(foreign_keys=[version_id])
    shadow_version: Mapped[PromptVersion | None] = relationship(foreign_keys=[shadow_version_id])
    canary_version: Mapped[PromptVersion | None] = relationship(foreign_keys=[canary_version_id])


class AliasEvent(Base):
    """History of alias moves (0 = none), kept even after the alias or version is gone."""

    __tablename__ = "alias_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int] = mapped_column(default=0)
    to_version: Mapped[int] = mapped_column(default=0)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    principal: Mapped[str] = mapped_column(String(64), default="", server_default="")  # who moved it
    # "move" (SetAlias, DeleteAlias), "promote", "shadow", "canary" or "policy"
    action: Mapped[str] = mapped_column(String(16), default="move", server_default="move")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")  # a promotion's Comparison


class IdempotencyKey(Base):
    """AIP-155: the first result of a create call with a request_id, so a retry returns it instead of redoing it.
    Keys are the caller's own: the same request_id from another principal is another key."""

    __tablename__ = "idempotency_keys"
    principal: Mapped[str] = mapped_column(String(64), primary_key=True, default="", server_default="")
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(256))  # name of what the first call created
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A train job. The request (task, data, hyperparameters) is stored whole so a restart can rerun it; a
    create's request_id lives in `idempotency_keys` like every other create's."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_created", "state", "created_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt_name: Mapped[str] = mapped_column(String(128), index=True)
    backbone_name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # task, hyperparameters, aliases, data ref
    examples: Mapped[bytes] = mapped_column(LargeBinary, default=b"", deferred=True)  # loaded only to train
    # bytes of inline examples it stores: they count against its principal's storage quota until it ends (and
    # its examples are dropped)
    inline_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    state: Mapped[str] = mapped_column(String(16), default="QUEUED")
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    loss: Mapped[float] = mapped_column(default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    result_version: Mapped[str] = mapped_column(String(256), default="")
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(default=0)  # dispatches so far; a dead replica costs one
    # the lease of the coordinator running it (RUNNING only): its instance id, and when the lease lapses unless
    # the owner's heartbeat renews it; another coordinator takes a job over only after that
    lease_owner: Mapped[str] = mapped_column(String(64), default="", server_default="")
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    principal: Mapped[str] = mapped_column(String(64), default="", server_default="", index=True)  # who submitted it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    """An uploaded labelled dataset (JSON lines of [text, label]); jobs name it as `datasets/{id}`. Its bytes
    are in `DatasetChunk` pieces (uploads from before chunking keep them in `data`)."""

    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rows: Mapped[int]
    label_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, default=b"")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    principal: Mapped[str] = mapped_column(String(64), default="", server_default="", index=True)  # uploader
    size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # bytes stored


class DatasetChunk(Base):
    """One piece of an upload's JSON lines, in order (`seq`), written as the upload streams in."""

    __tablename__ = "dataset_chunks"
    __table_args__ = (UniqueConstraint("dataset_id", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    seq: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Checkpoint(Base):
    """A job's training state at a step (safetensors: prompt, optimizer moments, best prompt, RNG)."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    """One event of a job (state change, progress, eval); WatchTrainJob replays these."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "sequence"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    sequence: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))  # STATE_CHANGED | PROGRESS | EVAL | LOG
    state: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    loss: Mapped[float] = mapped_column(default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    examples_per_second: Mapped[float] = mapped_column(default=0.0)
    eta_seconds: Mapped[float] = mapped_column(default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    """An access token: only the sha256 of its secret is kept (secrets are 256 random bits, so a fast hash
    is enough: there is nothing to brute-force)."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # reader | trainer | admin
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    creator: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEvent(Base):
    """One successful write RPC: who made it, on what, when (deletes included: the row outlives them)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # time filters; retention deletes by it
    principal: Mapped[str] = mapped_column(String(64), index=True)
    rpc: Mapped[str] = mapped_column(String(64), index=True)  # ListAuditEvents' method filter
    resource: Mapped[str] = mapped_column(String(256), index=True)  # ... its resource filter (a name or prefix)
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")  # e.g. a promotion's evidence


class CatalogState(Base):
    """One row: a counter every change to what a prompt reference resolves to bumps (prompts, versions,
    aliases, backbones), in the same transaction. A coordinator caches resolutions and drops them when the
    counter moved, whichever coordinator moved it."""

    __tablename__ = "catalog_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class ServedRow(Base):
    """One answered Classify row, kept (for a bounded retention) so its true label can be matched to it later:
    who answered with which label, what the shadow said on the same row, and the outcome once it arrives. Labels
    are indexes into the prompt's task labels (which never change)."""

    __tablename__ = "served_rows"
    __table_args__ = (
        Index("ix_served_rows_version_at", "version_id", "at"),  # a version's recent window
        Index("ix_served_rows_shadow_at", "shadow_version_id", "at"),  # ... and as a shadow
    )
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)  # retention prunes by it
    result_id: Mapped[str] = mapped_column(String(32), unique=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id", ondelete="CASCADE"))
    label: Mapped[int] = mapped_column(SmallInteger)
    alias: Mapped[str] = mapped_column(String(64), default="", server_default="")
    canary: Mapped[bool] = mapped_column(default=False)
    shadow_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id", ondelete="SET NULL"),
                                                          default=None)
    shadow_label: Mapped[int] = mapped_column(SmallInteger, default=-1)  # -1: no shadow scored it
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    outcome: Mapped[int | None] = mapped_column(SmallInteger, default=None)  # the true label
    outcome_at: Mapped[datetime | None] = mapped_column(default=None)


class VersionOutcome(Base):
    """A version's totals over all time (as answerer and as shadow): they outlive the served rows' retention.
    Only ever changed by `n = n + k`, so coordinators sharing a bank add up instead of overwriting."""

    __tablename__ = "version_outcomes"
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id", ondelete="CASCADE"), primary_key=True,
                                            autoincrement=False)
    served: Mapped[int] = mapped_column(BigInteger, default=0)
    labelled: Mapped[int] = mapped_column(BigInteger, default=0)
    correct: Mapped[int] = mapped_column(BigInteger, default=0)


class ConfusionCount(Base):
    """A version's labelled rows over all time by (true label, predicted label) index."""

    __tablename__ = "confusion_counts"
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id", ondelete="CASCADE"), primary_key=True)
    true_label_index: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    predicted_label_index: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class PairedCount(Base):
    """Rows with outcomes that a primary and its shadow (the candidate) both scored, by who got them right."""

    __tablename__ = "paired_counts"
    primary_version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id", ondelete="CASCADE"),
                                                    primary_key=True)
    candidate_version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id", ondelete="CASCADE"),
                                                      primary_key=True)
    both: Mapped[int] = mapped_column(BigInteger, default=0)
    primary_only: Mapped[int] = mapped_column(BigInteger, default=0)
    candidate_only: Mapped[int] = mapped_column(BigInteger, default=0)
    neither: Mapped[int] = mapped_column(BigInteger, default=0)
