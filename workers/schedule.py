"""How a prompt-tuning run moves and what it keeps: the learning-rate schedule, the prompt average and the
keep rule. Pure functions and one small state class, so each rule is tested on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 0 (HF's cosine schedule): the prompt settles at the end."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def debiased_average(ema: torch.Tensor, decay: float, step: int) -> torch.Tensor:
    """A zero-started EMA after `step` (>= 1) updates, bias-corrected as Adam's moments are: the weighted mean
    of the averaged values, never pulled towards zero. Decay 0: the last value itself."""
    return ema / (1.0 - decay**step)


def eval_metrics(row_losses: torch.Tensor, correct: int) -> dict[str, float]:
    """Accuracy and mean loss over the eval split, each with its standard error (`_se`) over rows."""
    n = len(row_losses)
    acc = correct / n
    return {"eval_accuracy": acc, "eval_loss": float(row_losses.mean()),
            "eval_accuracy_se": math.sqrt(acc * (1 - acc) / n),
            "eval_loss_se": float(row_losses.std(correction=1)) / math.sqrt(n) if n > 1 else 0.0}


COLLAPSE_EVALS = 2  # consecutive collapsed evaluations that end a run (one can be a transient: seen recovering)
# A collapsed prompt scores every held-out row alike: the rows' class probabilities differ by less than this.
# On the tiny test models collapsed runs spread by 1e-7..1e-6 and healthy ones by 2e-2 or more (one transient
# 5e-6 recovered by the next evaluation: hence COLLAPSE_EVALS); half-precision rounding needs the looser bound.
COLLAPSE_SPREAD = {"fp32": 1e-5, "half": 2e-3}


def probability_spread(logits: torch.Tensor) -> float:
    """`(rows, classes)` logits -> the largest gap between one row's class probability and the mean row's: 0
    when the prompt makes the model score every row the same (its output no longer depends on the input)."""
    p = logits.float().softmax(-1)  # (R, K)
    return float((p - p.mean(0)).abs().max())


@dataclass
class KeepRule:
    """Early stopping and the one-standard-error rule over a run's evaluations.

    Early stopping counts evaluations without a better `select_on` metric. The kept evaluation is the latest
    one within one standard error of the best: an eval split of a few hundred rows cannot tell such prompts
    apart, and the later one has more steps behind it, averaged at a lower learning rate. A collapsed
    evaluation (`"collapsed"` in its metrics: every row scored alike) is never kept nor the best; COLLAPSE_EVALS
    of them in a row end the run, which then keeps the last good evaluation's prompt (or has none to keep).
    """

    select_on: str
    patience: int
    best: dict[str, float] = field(default_factory=dict)
    kept: dict[str, float] = field(default_factory=dict)
    stale_evals: int = 0
    collapsed_evals: int = 0  # consecutive collapsed evaluations up to now

    @property
    def stopped_early(self) -> bool:
        return self.stale_evals >= self.patience or self.collapsed

    @property
    def collapsed(self) -> bool:
        return self.collapsed_evals >= COLLAPSE_EVALS

    def observe(self, metrics: dict[str, float]) -> bool:
        """Take one evaluation; True when its prompt becomes the kept one."""
        if metrics.get("collapsed"):
            self.collapsed_evals += 1
            return False
        self.collapsed_evals = 0
        key = self.select_on
        sign = -1.0 if key == "eval_loss" else 1.0
        gap = sign * (self.best[key] - metrics[key]) if self.best else -math.inf  # how much worse than the best
        se = self.best.get(f"{key}_se", 0.0)  # the best's; a checkpoint from before the rule has none: ties only
        if gap < 0:
            self.best = metrics
        self.stale_evals = 0 if gap < 0 else self.stale_evals + 1
        if gap <= se:
            self.kept = metrics
            return True
        return False
