"""Read models of the catalog: what the bank returns about backbones, prompts, versions and alias moves.

Frozen snapshots, built inside the bank's session and safe to use after it closed (MLflow's store returns its
entities the same way): no ORM row or lazy relationship leaves the bank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from promptbank_api.names import version_name
from promptbank_domain.kinds import Geometry
from promptbank_domain.task import TaskSpec


@dataclass(frozen=True)
class BackboneRecord:
    """A frozen model as registered; versions pin it through `fingerprint`."""

    name: str
    model: str
    revision: str
    architecture: str  # encoder | causal_lm | seq2seq | masked_lm
    hidden_size: int
    fingerprint: str
    # where its deep prompts go: self-attention layers, key/value heads, head width; 0s when it takes none
    deep_layers: int = 0
    deep_kv_heads: int = 0
    deep_head_dim: int = 0
    created_at: datetime | None = None

    @property
    def deep_width(self) -> int:
        """Columns of its deep prompts: keys and values of every layer (0: it takes none)."""
        return self.deep_layers * 2 * self.deep_kv_heads * self.deep_head_dim

    @property
    def geometry(self) -> Geometry:
        """What a prompt kind fits against (promptbank_kinds asks it, e.g. `kinds.misfit`)."""
        return Geometry(self.hidden_size, self.deep_layers, self.deep_kv_heads, self.deep_head_dim)


@dataclass(frozen=True)
class PromptRecord:
    """A task family: its task spec, tags, who created it, its newest version number and its aliases."""

    name: str
    task: TaskSpec
    tags: tuple[str, ...] = ()
    owner: str = ""  # a display field, not a permission
    created_by: str = ""  # the principal that created it (a trainer's jobs publish only to its own prompts)
    latest_version: int = 0
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> version number
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class VersionRecord:
    """One immutable trained prompt. `tensor` holds its safetensors bytes only when the caller asked for them."""

    prompt: str
    version: int
    backbone: str
    backbone_fingerprint: str
    sha256: str
    shape: tuple[int, ...]
    kind: str
    dtype: str
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)  # job, data, init, imported_from, principal
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # the aliases pointing at it
    created_at: datetime | None = None
    tensor: bytes = b""

    @property
    def name(self) -> str:
        return version_name(self.prompt, self.version)


@dataclass(frozen=True)
class ServedVersion:
    """What serving a row needs from the bank: an immutable version, its backbone pin and its prompt's task."""

    prompt: str
    version: str  # its resource name
    sha256: str
    backbone: str
    fingerprint: str
    task: TaskSpec
    n_virtual: int
    id: int = 0  # the version's row id in the bank (what a served row is recorded against)

    @property
    def row_key(self) -> str:
        """What a classified row is keyed by on a replica: the prompt's bytes *and* the task they are read
        under. Two prompts may hold the same tensor with different labels or label texts (an import, a copy);
        keyed by the bytes alone, rows of one would be scored with the other's task."""
        return f"{self.sha256}:{self.task.digest()}"


@dataclass(frozen=True)
class AliasEventRecord:
    """One change of an alias (versions 0 = none: created or deleted). `action` says what changed: "move",
    "promote" (with its `evidence`, a Comparison's to_json()), "shadow" or "canary" (from/to: the old and new
    candidate) or "policy"."""

    alias: str
    from_version: int
    to_version: int
    at: datetime | None
    principal: str
    action: str = "move"
    evidence: dict[str, object] = field(default_factory=dict)
