"""What a prompt does: its task spec, validated in `__post_init__` with errors that name the value."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from promptbank_api.errors import InvalidArgument

KINDS = ("classification",)
# Encoder backbones: the output positions mean-pooled and compared with the label texts. "all" (the default)
# pools every position of the row, prompt and text: the backbone's own sentence embedding of the prompted row;
# "prompt" pools only the prompt's positions (they read the text through attention); "text" the text's tokens.
# "all" and "prompt" read the label texts through the prompt too; "text" compares with the plain label texts.
POOLINGS = ("all", "prompt", "text")


class ConfigError(InvalidArgument, ValueError):
    """A config value is invalid (INVALID_ARGUMENT at the gRPC edge)."""


@dataclass(frozen=True)
class TaskSpec:
    """What a prompt does: a classification over `labels`, read through label words (LMs) or label texts
    compared with the pooled output (encoders)."""

    labels: tuple[str, ...]
    label_words: tuple[str, ...] = ()
    label_texts: tuple[str, ...] = ()
    kind: str = "classification"
    description: str = ""
    pooling: str = POOLINGS[0]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"task kind {self.kind!r} is not supported; use one of {list(KINDS)}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} is not supported; use one of {list(POOLINGS)}")
        labels = tuple(str(x) for x in self.labels)
        if len(labels) < 2:
            raise ConfigError(f"a classification task needs at least 2 labels, got {list(labels)}")
        if len(set(labels)) != len(labels) or any(not x.strip() for x in labels):
            raise ConfigError(f"labels must be distinct and non-empty, got {list(labels)}")
        object.__setattr__(self, "labels", labels)
        for name in ("label_words", "label_texts"):
            value = tuple(str(x) for x in getattr(self, name)) or labels
            if len(value) != len(labels):
                raise ConfigError(f"{name} has {len(value)} entries but there are {len(labels)} labels")
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def digest(self) -> str:
        """A short hash of everything that changes how a row is scored (labels, label words and texts, pooling,
        description included for simplicity): rows of equal digests read their prompt the same way."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        known = {f.name for f in fields(cls)}
        args: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**args)
