"""Per-row sampling: each row has its own settings and its own seeded generator, so the tokens a request draws
for a seed do not depend on which rows share its decode steps (nor on the path: batched or one at a time).

Order as in Hugging Face's samplers: temperature, then top-k, then top-p (nucleus); temperature 0 is greedy.
"""

from __future__ import annotations

import torch


class Sampler:
    """One row's next-token choice."""

    def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.gen = torch.Generator().manual_seed(seed) if temperature > 0 else None

    @property
    def greedy(self) -> bool:
        return self.gen is None

    def pick(self, logits: torch.Tensor) -> int:
        """(V,) logits -> token id."""
        if self.gen is None:
            return int(logits.argmax())
        x = logits.float().cpu() / self.temperature  # a CPU generator draws the same on any device
        if 0 < self.top_k < x.shape[-1]:
            kth = torch.topk(x, self.top_k).values[-1]
            x = x.masked_fill(x < kth, float("-inf"))
        if self.top_p < 1.0:
            order = torch.argsort(x, descending=True)
            probs = torch.softmax(x[order], dim=-1)
            drop = probs.cumsum(-1) - probs >= self.top_p  # keep the smallest head reaching top_p (at least one)
            x[order[drop]] = float("-inf")
        return int(torch.multinomial(torch.softmax(x, dim=-1), 1, generator=self.gen))


def pick_rows(logits: torch.Tensor, samplers: list[Sampler]) -> list[int]:
    """(B, V) logits -> each row's token: one argmax for all greedy rows, each sampled row on its own generator."""
    greedy = logits.argmax(dim=-1).tolist()
    return [g if s.greedy else s.pick(row) for g, s, row in zip(greedy, samplers, logits, strict=True)]
