"""The reparameterisation a deep prompt may train through (prefix tuning's MLP; P-tuning v2's and PEFT's
`prefix_projection`): each prefix position is computed from a small trainable embedding by a two-layer MLP
that every position shares, which couples positions and layers while the prompt trains.

Only the computed prefix leaves training: evaluations, the average, the kept prompt and the stored version are
all `(P, width)` tensors, the network folded away. Its last layer starts at zero, so training starts exactly at
the job's initial prefix (the `base`), as an unprojected deep prompt does.
"""

from __future__ import annotations

import torch

from promptbank_api.errors import InvalidArgument

MOMENTS = ("exp_avg", "exp_avg_sq")  # AdamW's per-parameter state a checkpoint keeps


class PrefixProjection(torch.nn.Module):
    """`base + up(tanh(down(embedding)))` per position: `(P, width)` from a `(P, in_dim)` embedding through
    `hidden` units. Initialised from `seed` alone (its own generator), so co-batched jobs draw the same."""

    def __init__(self, base: torch.Tensor, in_dim: int, hidden: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        n, width = base.shape
        self.register_buffer("base", base.detach().clone())
        self.embedding = torch.nn.Parameter(torch.randn(n, in_dim, generator=gen))
        self.down = torch.nn.Linear(in_dim, hidden)
        self.up = torch.nn.Linear(hidden, width)
        with torch.no_grad():
            self.down.weight.copy_(torch.randn(hidden, in_dim, generator=gen) / in_dim**0.5)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()
        self.to(base.device)

    def forward(self) -> torch.Tensor:
        out: torch.Tensor = self.base + self.up(torch.tanh(self.down(self.embedding)))  # (Module calls are untyped)
        return out

    def tensors(self, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps of it: its tensors, and each parameter's Adam moments as `<name>.<moment>`."""
        out = {k: v.detach() for k, v in self.state_dict().items()}
        for name, p in self.named_parameters():
            out.update({f"{name}.{m}": opt.state[p][m] for m in MOMENTS if m in opt.state.get(p, {})})
        return out

    def restore(self, tensors: dict[str, torch.Tensor], opt: torch.optim.Optimizer, adam_step: float) -> None:
        """Load `tensors()` back, and Adam's moments when the checkpoint was taken after a step."""
        own = self.state_dict()
        bad = [k for k, v in own.items() if k not in tensors or tensors[k].shape != v.shape]
        if bad:
            raise InvalidArgument(f"checkpoint lacks the prefix projection's {bad} (or their shapes differ): it was "
                                  f"written by a job with another prefix_projection")
        self.load_state_dict({k: tensors[k] for k in own})
        if adam_step <= 0:
            return
        for name, p in self.named_parameters():
            moments = {m: tensors.get(f"{name}.{m}") for m in MOMENTS}
            if any(v is None or v.shape != p.shape for v in moments.values()):
                raise InvalidArgument(f"checkpoint lacks Adam's moments of the prefix projection's {name}")
            opt.state[p] = {"step": torch.tensor(adam_step), **{m: v.to(p.device) for m, v in moments.items()}}  # type: ignore[union-attr]
