"""Task and training configs as dataclasses, validated in `__post_init__` with errors that name the value."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import promptbank_kinds as kinds
from promptbank_api.errors import InvalidArgument

KINDS = ("classification",)
INITS = ("random", "vocab", "labels", "text")  # plus a stored prompt: a reference, or "nearest" (coordinator)
# Encoder backbones: the output positions mean-pooled and compared with the label texts. "all" (the default)
# pools every position of the row, prompt and text: the backbone's own sentence embedding of the prompted row;
# "prompt" pools only the prompt's positions (they read the text through attention); "text" the text's tokens.
# "all" and "prompt" read the label texts through the prompt too; "text" compares with the plain label texts.
POOLINGS = ("all", "prompt", "text")
# Training autocast: bf16 halves the frozen model's matmul cost where the hardware has bf16 units; the prompt
# and its optimizer stay fp32. "auto" = bf16 where supported.
PRECISIONS = ("auto", "bf16", "fp32")
# Which eval metric keeps a prompt and stops early. Cross-entropy by default: on a few hundred held-out rows
# accuracy moves in steps of 1/n and its noise picks epochs at random; the loss is smooth (HF's default too).
SELECT_ON = ("eval_loss", "eval_accuracy")

DEFAULT_KIND = kinds.DEFAULT  # the kind of a job that names none, where the backbone carries it (promptbank_kinds)

MAX_PROJECTION = 8192  # hidden units of a deep prompt's training MLP (promptbank_kinds/projection.py)
_PROJECTED = tuple(k.name for k in kinds.all() if k.projects)  # kinds that may train through a projection

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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one prompt-tuning run. Defaults are tuned for prompt tuning on a small encoder."""

    num_virtual_tokens: int = 20
    prompt_kind: str = kinds.UNMARKED  # a promptbank_kinds name: "input" (vectors before the text), "deep", ...
    epochs: int = 12
    learning_rate: float = 3e-2
    batch_size: int = 8
    seed: int = 0
    init: str = "vocab"
    init_text: str = ""
    max_length: int = 128
    max_steps: int = 0
    warmup_fraction: float = 0.06
    weight_decay: float = 0.0
    eval_fraction: float = 0.05
    eval_every_epochs: int = 1
    patience: int = 4  # early stopping: evaluations without a better `select_on` metric before stopping
    select_on: str = "eval_loss"  # the eval metric that picks the kept prompt and drives early stopping
    checkpoint_every: int = 50  # steps between checkpoints (also one at every evaluation)
    progress_every: int = 5
    precision: str = "auto"
    input_noise: float = 5.0  # NEFTune-style noise on the text's token embeddings while training (0 = off)
    token_dropout: float = 0.0  # drop each text token with this probability while training (0 = off)
    ema_decay: float = 0.998  # evaluate and keep an exponential moving average of the prompt (0 = the prompt)
    prefix_projection: int = 0  # deep only: hidden units of the MLP the prefix trains through (0 = none)
    max_grad_norm: float = 0.0  # clip each step's gradient of the job's own parameters to this L2 norm (0 = off)
    init_from: str = field(default="", repr=False)  # filled by the coordinator for a stored-version init

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.num_virtual_tokens <= 512, "num_virtual_tokens", "between 1 and 512"),
            (self.prompt_kind in kinds.names(), "prompt_kind", f"one of {list(kinds.names())}"),
            (1 <= self.epochs <= 1000, "epochs", "between 1 and 1000"),
            (0 < self.learning_rate <= 10, "learning_rate", "in (0, 10]"),
            (1 <= self.batch_size <= 4096, "batch_size", "between 1 and 4096"),
            (8 <= self.max_length <= 8192, "max_length", "between 8 and 8192"),
            (self.max_steps >= 0, "max_steps", ">= 0"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction", "in [0, 1)"),
            (0 <= self.eval_fraction < 0.9, "eval_fraction", "in [0, 0.9)"),
            (self.patience >= 1, "patience", ">= 1"),
            (self.checkpoint_every >= 1, "checkpoint_every", ">= 1"),
            (self.precision in PRECISIONS, "precision", f"one of {list(PRECISIONS)}"),
            (0 <= self.input_noise <= 100, "input_noise", "in [0, 100]"),
            (0 <= self.token_dropout < 1, "token_dropout", "in [0, 1)"),
            (0 <= self.ema_decay < 1, "ema_decay", "in [0, 1)"),
            (0 <= self.prefix_projection <= MAX_PROJECTION, "prefix_projection", f"between 0 and {MAX_PROJECTION}"),
            (not self.prefix_projection or self.prompt_kind in _PROJECTED, "prefix_projection",
             f"0 unless prompt_kind is {' or '.join(map(repr, _PROJECTED))} (other kinds train directly)"),
            (0 <= self.max_grad_norm <= 1e6, "max_grad_norm", "in [0, 1e6] (0 = off)"),
            (self.select_on in SELECT_ON, "select_on", f"one of {list(SELECT_ON)}"),
            (self.init in INITS or bool(self.init_from), "init", f"one of {list(INITS)} or a prompt reference"),
            (self.init != "text" or bool(self.init_text.strip()), "init_text", "non-empty when init is 'text'"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: must be {rule}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def defaults(cls, kind: str = kinds.UNMARKED) -> TrainConfig:
        """The defaults of a `kind` prompt (its `train_defaults` over the fields' own); an unknown kind is refused."""
        return cls(prompt_kind=kind, **(kinds.get(kind).train_defaults if kind in kinds.names() else {}))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
