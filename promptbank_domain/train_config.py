"""Hyperparameters of one prompt-tuning run: `TrainConfig`, the one table of them (each field's `Param`), and
the defaults that differ by prompt kind."""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

from promptbank_domain import kinds
from promptbank_domain.params import KEY, Param, param, show
from promptbank_domain.task import ConfigError

INITS = ("random", "vocab", "labels", "text")  # plus a stored prompt: a reference, or "nearest" (coordinator)
# Training autocast: bf16 halves the frozen model's matmul cost where the hardware has bf16 units; the prompt
# and its optimizer stay fp32. "auto" = bf16 where supported.
PRECISIONS = ("auto", "bf16", "fp32")
# Which eval metric keeps a prompt and stops early. Cross-entropy by default: on a few hundred held-out rows
# accuracy moves in steps of 1/n and its noise picks epochs at random; the loss is smooth (HF's default too).
SELECT_ON = ("eval_loss", "eval_accuracy")

# Defaults that differ by prompt kind are each kind's `train_defaults` (its description in
# promptbank_domain.kinds); so is the kind a job that names none gets (`kinds.preferred()`).

MAX_PROJECTION = 8192  # hidden units of a prefix projection's training MLP (promptbank_kinds/projection.py)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one prompt-tuning run. Defaults are tuned for prompt tuning on a small encoder."""

    num_virtual_tokens: int = param(20, setting="prompt length (virtual tokens)", help="prompt length",
                                    flag="--virtual-tokens", low=1, high=512)
    prompt_kind: str = param(kinds.UNMARKED, setting="prompt kind", wire="kind", flag="--kind", choices=kinds.names,
                             help=f"what to train: {kinds.help_text()}",
                             default_note="deep where the backbone can carry one (its attention is SDPA or "
                                          "eager), else input")
    epochs: int = param(12, setting="epochs", help="passes over the training split", flag="--epochs", low=1,
                        high=1000)
    learning_rate: float = param(3e-2, setting="learning rate (AdamW)", help="learning rate", flag="--lr", low=0,
                                 high=10, open_low=True)
    batch_size: int = param(8, setting="batch size", help="rows per step", flag="--batch-size", low=1, high=4096)
    seed: int = param(0, setting="seed", help="init, split and batch order", flag="--seed")
    init: str = param("vocab", setting="prompt init", wire="text", flag="--init",
                      help="random | vocab (sampled vocabulary embeddings) | labels | text | a prompt reference "
                           "| nearest (the stored prompt under which the data scores best)")
    init_text: str = param("", setting="init text", wire="text", flag="--init-text",
                           help="text whose token embeddings start the prompt (init=text)")
    max_length: int = param(128, setting="tokens per row", help="tokens per row; longer texts are cut",
                            flag="--max-length", low=8, high=8192)
    max_steps: int = param(0, setting="step cap", help="stop after this many steps", default_note="none: the epochs decide",
                           flag="--max-steps", low=0, zero_unset=True)
    warmup_fraction: float = param(0.06, setting="learning-rate warmup", flag="--warmup-fraction", low=0, high=1,
                                   open_high=True, help="fraction of the steps over which the learning rate "
                                                        "rises linearly, before the cosine decay")
    weight_decay: float = param(0.0, setting="weight decay (AdamW, decoupled)", flag="--weight-decay", low=0,
                                high=1, help="AdamW's decoupled weight decay of the trained parameters")
    eval_fraction: float = param(0.05, setting="held out for evaluation", wire="dataset", flag="--eval-fraction",
                                 low=0, high=0.9, open_high=True, note="0 = no held-out split",
                                 help="fraction of the rows held out for evaluation and early stopping")
    eval_every_epochs: int = param(1, setting="", wire="", help="epochs between evaluations")
    patience: int = param(4, setting="early stopping (patience)", flag="--patience", low=1,
                          help="evaluations without a better `select_on` metric before the job stops")
    select_on: str = param("eval_loss", setting="metric for early stopping and the kept prompt", wire="text",
                           flag="--select-on", choices=SELECT_ON,
                           help="eval metric that stops early and keeps the latest prompt within one standard "
                                "error of the best")
    checkpoint_every: int = param(50, setting="checkpoints (steps between)", flag="--checkpoint-every", low=1,
                                  help="steps between checkpoints (one is also kept at every evaluation)")
    progress_every: int = param(5, setting="", wire="", help="steps between progress events")
    precision: str = param("auto", setting="precision", wire="text", flag="--precision", choices=PRECISIONS,
                           help="training autocast: auto = bf16 where the hardware has it")
    input_noise: float = param(5.0, setting="input noise (NEFTune alpha)", flag="--input-noise", low=0, high=100,
                               note="0 = off", help="noise on the text's token embeddings while training")
    token_dropout: float = param(0.0, setting="token dropout", flag="--token-dropout", low=0, high=1,
                                 open_high=True, note="0 = off", metavar="P",
                                 help="drop each text token with this probability while training")
    ema_decay: float = param(0.998, setting="prompt averaging (EMA decay per step)", flag="--ema-decay", low=0,
                             high=1, open_high=True, note="0 = off",
                             help="keep an exponential moving average of the prompt, decay per step")
    prefix_projection: int = param(0, setting="prefix projection (deep prompts only)", flag="--prefix-projection",
                                   low=0, high=MAX_PROJECTION, note="0 = train the prefix directly",
                                   metavar="HIDDEN", help="deep prompts: train the prefix through an MLP of this "
                                                          "many hidden units, folded away when stored")
    max_grad_norm: float = param(0.0, setting="gradient clipping (L2 norm per step)", flag="--max-grad-norm",
                                 low=0, high=1e6, note="0 = off", metavar="N",
                                 help="clip each step's gradient of the job's own parameters to this L2 norm")
    init_from: str = field(default="", repr=False, metadata={KEY: Param(  # filled by the coordinator
        setting="", wire="", help="a stored-version reference or 'nearest' to start from")})

    def __post_init__(self) -> None:
        for f, p in table().items():
            value = getattr(self, f.name)
            if not p.holds(value):
                raise ConfigError(f"{f.name}={value!r} is invalid: must be {p.rule(f.type == 'int')}")
        checks = [
            (not self.prefix_projection or self.prompt_kind in kinds.projected(), "prefix_projection",
             f"0 unless prompt_kind is {' or '.join(map(repr, kinds.projected()))} (other kinds train directly)"),
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
        """The defaults of a `kind` prompt (its described `train_defaults` over the fields' own); an unknown
        kind is refused."""
        return cls(prompt_kind=kind, **(kinds.get(kind).train_defaults if kind in kinds.names() else {}))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def table() -> dict[Field[Any], Param]:
    """Every field of TrainConfig with its Param row, in declaration order."""
    return {f: f.metadata[KEY] for f in fields(TrainConfig)}


PARAMS: dict[str, Param] = {f.name: p for f, p in table().items()}  # name -> its row
TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(TrainConfig)}  # name -> "int" | "float" | "str"


def on_wire(*wires: str) -> tuple[str, ...]:
    """The names of the fields that travel as `wires` (see `params.Wire`), in table order."""
    return tuple(name for name, p in PARAMS.items() if p.wire in wires)


def default_text(name: str) -> str:
    """A field's default in words: one value, or each kind's where they differ (the default kind's first)."""
    p = PARAMS[name]
    if p.default_note:
        return p.default_note
    first_kind = kinds.preferred()
    order = [first_kind, *(k for k in kinds.names() if k != first_kind)]
    values = [getattr(TrainConfig.defaults(k), name) for k in order]
    if len(set(values)) == 1:
        return show(values[0]) if values[0] != "" else "none"
    first, *rest = zip(values, order, strict=True)
    return ", ".join([f"{show(first[0])} for {_a(first[1])} {first[1]} prompt",
                      *(f"{show(v)} for {_a(k)} {k} one" for v, k in rest)])


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def markdown_table() -> str:
    """The docs' table of training settings (docs/configuration.md holds it; a test compares the two)."""
    lines = ["| setting | default | range | `promptbank train` flag | API field |", "|---|---|---|---|---|"]
    for name, p in PARAMS.items():
        if not p.setting:
            continue
        message = "Dataset" if p.wire == "dataset" else "Hyperparameters"
        rule = p.rule(TYPES[name] == "int", note=False) or "—"
        if p.choices:
            rule = ", ".join(f"`{c}`" for c in p.options)
        elif p.zero_unset:
            rule = ">= 1 (unset: no cap)"
        flag = f"`{p.flag}{' ' + p.metavar if p.metavar else ''}`" + (f" ({p.note})" if p.note else "")
        lines.append(f"| {p.setting} | {default_text(name)} | {rule} | {flag} | `{message}.{name}` |")
    return "\n".join(lines) + "\n"
