"""The reparameterisation a deep prompt may train through (prefix tuning's MLP; P-tuning v2's and PEFT's
`prefix_projection`): each prefix position is computed from a small trainable embedding by a two-layer MLP
that every position shares, which couples positions and layers while the prompt trains.

Only the computed prefix leaves training: evaluations, the average, the kept prompt and the stored version are
all `(P, width)` tensors, the network folded away. Its last layer starts at zero, so training starts exactly at
the job's initial prefix (the `base`), as an unprojected deep prompt does.
"""

from __future__ import annotations

import torch


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
        return self.base + self.up(torch.tanh(self.down(self.embedding)))
