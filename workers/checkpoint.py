"""The training checkpoint format: what a job needs to continue exactly where it stopped, and nothing else.

Safetensors bytes only (parsed by `bank.codec`), never pickle. Tensors: the RNG states; the prompt, unless a
prefix projection computes it (then that network's tensors and Adam moments, under `projection/`: the bulk of
a projected job's checkpoint); the prompt's own Adam moments when it is trained directly, after its first step;
the average's accumulator when averaging is on (`ema_decay` 0: it is the prompt); the kept prompt once an
evaluation is kept. A run's last checkpoint (at its end, after its last evaluation) holds no network and no
moments: resuming it only makes the result. Metadata strings hold the step and the keep rule's evaluations.
Checkpoints written before a field existed, or with the fields since left out, still load (the defaults
below, and `Trainer._restore`, say how). Sizes on MiniLM: docs/architecture.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from bank.codec import metadata, read_safetensors, write_safetensors
from promptbank_api.errors import InvalidArgument

REQUIRED_TENSORS = ("torch_rng",)  # the rest depends on the job (its kind, its settings, how far it got)
PROMPT_SHAPED = ("prompt", "ema", "best_prompt", "exp_avg", "exp_avg_sq")
PROJECTION = "projection/"  # name prefix of the prefix projection's tensors (promptbank_kinds/projection.py)


@dataclass
class TrainState:
    """One job's resumable state at `step`. `kept_prompt` is stored as `best_prompt` (its name from before the
    one-standard-error rule) so older checkpoints load."""

    step: int
    prompt: torch.Tensor | None  # (n, H); None while a prefix projection computes it
    ema: torch.Tensor | None  # (n, H) the average's accumulator; None without averaging, or from before it
    kept_prompt: torch.Tensor | None  # (n, H); None until an evaluation is kept
    exp_avg: torch.Tensor | None  # (n, H) Adam's moments of a prompt trained directly; None before its first step,
    exp_avg_sq: torch.Tensor | None  # through a projection (see `projection`), and at the run's end
    adam_step: float
    torch_rng: torch.Tensor
    noise_rng: torch.Tensor | None  # None in checkpoints from before input noise
    best: dict[str, float]
    kept: dict[str, float]
    stale_evals: int = 0
    collapsed_evals: int = 0  # consecutive collapsed evaluations (0 in checkpoints from before the check)
    seen: int = 0  # training rows seen so far (examples/s after resume)
    projection: dict[str, torch.Tensor] = field(default_factory=dict)  # a projection's tensors and moments

    def to_bytes(self) -> bytes:
        named = {"prompt": self.prompt, "best_prompt": self.kept_prompt, "exp_avg": self.exp_avg,
                 "exp_avg_sq": self.exp_avg_sq, "ema": self.ema, "noise_rng": self.noise_rng}
        tensors = {"torch_rng": self.torch_rng, **{k: v for k, v in named.items() if v is not None}}
        tensors.update({PROJECTION + k: v for k, v in self.projection.items()})
        meta = {"step": self.step, "adam_step": float(self.adam_step), "best": json.dumps(self.best),
                "kept": json.dumps(self.kept), "stale_evals": self.stale_evals,
                "collapsed_evals": self.collapsed_evals, "seen": self.seen}
        return write_safetensors(tensors, meta)

    @classmethod
    def from_bytes(cls, data: bytes, shape: tuple[int, ...]) -> TrainState:
        """Parse and validate a checkpoint for a prompt of `shape`; anything wrong is INVALID_ARGUMENT naming it."""
        t, header = read_safetensors(data, "checkpoint")
        meta = metadata(header)
        missing = [k for k in REQUIRED_TENSORS if k not in t] + [k for k in ("step", "best") if k not in meta]
        if missing:
            raise InvalidArgument(f"checkpoint lacks {missing}")
        for k in PROMPT_SHAPED:
            if k in t and tuple(t[k].shape) != tuple(shape):
                raise InvalidArgument(f"checkpoint {k} shape {list(t[k].shape)} != {list(shape)}")
        try:
            best = json.loads(meta["best"])
            return cls(step=int(meta["step"]), prompt=t.get("prompt"), ema=t.get("ema"),
                       kept_prompt=t.get("best_prompt"), exp_avg=t.get("exp_avg"), exp_avg_sq=t.get("exp_avg_sq"),
                       adam_step=float(meta.get("adam_step", 0.0)),
                       torch_rng=t["torch_rng"], noise_rng=t.get("noise_rng"), best=best,
                       kept=json.loads(meta.get("kept", meta["best"])),  # before the one-SE rule the best was kept
                       stale_evals=int(meta.get("stale_evals", 0)),
                       collapsed_evals=int(meta.get("collapsed_evals", 0)), seen=int(meta.get("seen", 0)),
                       projection={k[len(PROJECTION):]: v for k, v in t.items() if k.startswith(PROJECTION)})
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"checkpoint metadata is invalid: {exc}") from None
