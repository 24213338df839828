"""The one protocol every prompt kind implements, and the small values its parts take and return."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from promptbank_api.errors import InvalidArgument
from promptbank_domain.kinds import Geometry as Geometry  # plain data: the domain's read models carry it

ConfigInt = Callable[[str, bool], int | None]  # PEFT config reader: (key, required) -> positive int or None


@dataclass(frozen=True)
class Row:
    """One row's prompt as a forward takes it: the stored `(n, width)` tensor and its kind's name. A bare
    tensor where a row is expected is a prompt of the unmarked kind (`promptbank_kinds.row`)."""

    tensor: torch.Tensor
    kind: str


@dataclass(frozen=True)
class Applied:
    """How a row's prompt enters a forward (prefill and every decode step alike): vectors spliced into the row's
    input embeddings (before its text; after [CLS] on encoders), and/or a key/value prefix in every
    self-attention layer, after which the row's own positions start. A prefill puts `embeds` into the KV cache
    with the text; a prefix is never cached and joins each forward, so decoding needs nothing more."""

    embeds: torch.Tensor | None  # (n, H)
    prefix: torch.Tensor | None  # (P, width)


@dataclass(frozen=True)
class PeftDims:
    """The numbers a PEFT adapter config records of a prompt (0 where the kind records none)."""

    token_dim: int
    num_layers: int = 0
    num_attention_heads: int = 0

    def __str__(self) -> str:
        order = ("num_layers", "num_attention_heads", "token_dim")
        return ", ".join(f"{k}={getattr(self, k)}" for k in order if getattr(self, k))


class BackboneView(Protocol):
    """What a kind's initialisation reads of a backbone; the worker implements it over the loaded model."""

    def embeddings(self) -> torch.Tensor:
        """(vocab, H) fp32 CPU token embeddings."""
        ...

    def key_values(self, ids: list[int]) -> torch.Tensor:
        """(len(ids), width) fp32 CPU keys and values every self-attention layer computes for `ids` as a text."""
        ...


class Reparam(Protocol):
    """What trains a prompt in place of the prompt itself (prefix tuning's MLP). Its tensors and Adam moments
    are what a checkpoint keeps beside the prompt-shaped tensors (under `projection/`)."""

    def __call__(self) -> torch.Tensor: ...

    def parameters(self) -> Any: ...

    def tensors(self, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]: ...

    def restore(self, tensors: dict[str, torch.Tensor], opt: torch.optim.Optimizer, adam_step: float) -> None: ...


class PromptKind(Protocol):
    """A prompt kind: everything that differs between kinds, asked of the registry by the bank, the workers and
    the coordinator. Every member is required (`promptbank_kinds.register` refuses a kind lacking one)."""

    # ---- identity
    name: str  # stored in a version's row, its tensor bytes' metadata and a job's config ("input")
    proto_enum: str  # the API's PromptKind value name ("PROMPT_KIND_INPUT")
    label: str  # in messages: "input prompt"
    help: str  # what it trains, for `--kind`'s help ("'input' vectors before the text")

    # ---- shape: a prompt is a 2-D `(n, width)` tensor
    width_name: str  # what `width` is called in messages ("hidden size")

    def width(self, geo: Geometry) -> int:
        """Columns of this kind's tensor on a backbone of `geo`; 0 when the backbone cannot carry it."""
        ...

    def positions(self, tensor: torch.Tensor) -> int:
        """Positions a row's prompt adds to its forward (length grouping, `prompted_labels`)."""
        ...

    def nbytes(self, tensor: torch.Tensor) -> int:
        """Bytes a decoded prompt holds (replica caches)."""
        ...

    # ---- a row in a mixed batch
    def apply(self, tensor: torch.Tensor) -> Applied:
        """How the row's prompt enters the forward; must keep the autograd graph back to `tensor`."""
        ...

    # ---- initialisation
    def init_rows(self, view: BackboneView, ids: list[int]) -> torch.Tensor:
        """`(len(ids), width)` start rows read off real tokens `ids` (vocab, label words, a text)."""
        ...

    def init_scale(self, view: BackboneView, ids: list[int]) -> torch.Tensor:
        """The spread a random start is drawn with (`ids`: a sample of common vocabulary)."""
        ...

    # ---- training
    train_defaults: Mapping[str, Any]  # TrainConfig fields whose defaults differ for this kind
    projects: bool  # whether it may train through a prefix projection (`prefix_projection` > 0)

    def trainable(self, start: torch.Tensor, in_dim: int, hidden: int, seed: int) -> Reparam | None:
        """What trains instead of the prompt when `hidden` > 0 (None: the prompt trains directly)."""
        ...

    # ---- PEFT
    peft_type: str  # PEFT's peft_type for this kind ("PROMPT_TUNING")

    def peft_refusal(self, task_type: str) -> str:
        """Why an adapter of this kind and PEFT `task_type` cannot cross over ("" when it can)."""
        ...

    def peft_dims(self, token_dim: int, num_layers: int, num_attention_heads: int) -> PeftDims:
        """Validated dims for an export (InvalidArgument naming a bad one this kind needs)."""
        ...

    def peft_dims_of(self, width: int, geo: Geometry) -> PeftDims:
        """The dims a stored `(n, width)` prompt on a backbone of `geo` exports with (and an import must have)."""
        ...

    def peft_read(self, config: ConfigInt, columns: int) -> PeftDims:
        """The dims an adapter_config.json records (`columns`: of its tensor, where the config may omit one)."""
        ...

    def peft_shape(self, n: int, submodules: int, dims: PeftDims) -> tuple[list[int], str]:
        """The tensor shape PEFT stores for `n` virtual tokens, and how the config says it (for messages)."""
        ...

    def peft_config(self, dims: PeftDims) -> dict[str, Any]:
        """This kind's keys of adapter_config.json (the keys every kind shares are the caller's)."""
        ...


class PositionRows:
    """Shared parts of kinds whose tensor holds one row per position it adds (input and deep prompts)."""

    def positions(self, tensor: torch.Tensor) -> int:
        return int(tensor.shape[0])

    def nbytes(self, tensor: torch.Tensor) -> int:
        return int(tensor.numel() * tensor.element_size())


def members() -> tuple[str, ...]:
    """Every member a kind must have: the protocol's attributes and methods."""
    own = {k for k, v in vars(PromptKind).items() if not k.startswith("_") and callable(v)}
    return tuple(sorted(own | set(PromptKind.__annotations__)))


def positive_int(name: str, value: int) -> int:
    """`value` when it is a positive int (not a bool); INVALID_ARGUMENT naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return value
