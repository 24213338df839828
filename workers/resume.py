"""A `Trainer`'s checkpoint and its resume: what continuing exactly needs, and only that (the format is
workers/checkpoint.py).

A prompt trained directly keeps the prompt and its Adam moments. A deep prompt trained through its prefix
projection keeps that network and its moments instead (the prompt is what the network computes, and the
prompt-shaped moments were never used): the network and its moments are the bulk of such a checkpoint, and
resuming exactly needs every one of them. The average's accumulator is kept only when averaging is on
(`ema_decay` 0: it is the prompt), the kept prompt once an evaluation is kept. At a run's end (its last step, or
stopped early) only its result is left to make: the prompt, the average and the kept prompt, no network and no
moments. Sizes on MiniLM: docs/architecture.md.
"""

from __future__ import annotations

from typing import Protocol

import torch

from promptbank_api.errors import InvalidArgument
from promptbank_domain.train_config import TrainConfig
from promptbank_kinds.base import Reparam
from workers.checkpoint import TrainState
from workers.schedule import KeepRule, lr_factor


class Resumable(Protocol):
    """What a checkpoint reads of a job's `Trainer` (workers/trainer.py), and what a resume sets."""

    cfg: TrainConfig
    step: int
    seen: int
    total: int
    warmup: int
    prompt: torch.Tensor
    ema: torch.Tensor
    kept_prompt: torch.Tensor
    keep: KeepRule
    projection: Reparam | None
    noise_gen: torch.Generator

    @property
    def opt(self) -> torch.optim.Optimizer: ...  # its state is set in place

    @property
    def done(self) -> bool: ...

    @property
    def kept(self) -> dict[str, float]: ...

    def parameters(self) -> list[torch.Tensor]: ...

    def follow_projection(self) -> None: ...


def snapshot(t: Resumable) -> TrainState:
    """`t`'s state now, as much of it as resuming needs."""
    going = not t.done
    network = t.projection if going else None
    moments = t.opt.state.get(t.prompt, {}) if going else {}  # empty too when a projection is trained instead
    first = t.opt.state.get(t.parameters()[0], {})
    return TrainState(
        step=t.step, prompt=None if network is not None else t.prompt.detach(),
        ema=t.ema if t.cfg.ema_decay else None, kept_prompt=t.kept_prompt if t.kept else None,
        exp_avg=moments.get("exp_avg"), exp_avg_sq=moments.get("exp_avg_sq"),
        adam_step=float(first["step"]) if "step" in first else 0.0, torch_rng=torch.get_rng_state(),
        noise_rng=t.noise_gen.get_state(), best=t.keep.best, kept=t.keep.kept, stale_evals=t.keep.stale_evals,
        collapsed_evals=t.keep.collapsed_evals, seen=t.seen,
        projection=network.tensors(t.opt) if network is not None else {},
    )


def restore(t: Resumable, data: bytes) -> None:
    """Put `t` (just built for its job) where the checkpoint `data` left it; INVALID_ARGUMENT naming what a
    checkpoint lacks for this job."""
    st = TrainState.from_bytes(data, tuple(t.prompt.shape))
    dev = t.prompt.device
    t.step, t.seen = st.step, st.seen
    t.keep.best, t.keep.kept, t.keep.stale_evals = st.best, st.kept, st.stale_evals
    t.keep.collapsed_evals = st.collapsed_evals
    if t.projection is not None and (st.projection or not t.done):  # the network trains on
        t.projection.restore(st.projection, t.opt, st.adam_step)
        t.follow_projection()
    else:
        if st.prompt is None:
            raise InvalidArgument("checkpoint lacks the prompt" + (
                " (it was written by a job trained through a prefix projection)" if st.projection else ""))
        with torch.no_grad():
            t.prompt.copy_(st.prompt.to(dev))
        if t.projection is None and st.adam_step > 0 and not t.done:
            if st.exp_avg is None or st.exp_avg_sq is None:
                raise InvalidArgument("checkpoint lacks Adam's moments of the prompt (exp_avg, exp_avg_sq)")
            t.opt.state[t.prompt] = {"step": torch.tensor(st.adam_step), "exp_avg": st.exp_avg.to(dev),
                                     "exp_avg_sq": st.exp_avg_sq.to(dev)}
    # no accumulator stored: averaging is off (it then is the prompt, exactly), or the checkpoint is from before
    # averaging (the average starts at its prompt)
    ema = st.ema.to(dev) if st.ema is not None else t.prompt.detach() * (1.0 - t.cfg.ema_decay**st.step)
    t.ema = ema.clone()
    if st.kept and st.kept_prompt is None:
        raise InvalidArgument("checkpoint lacks ['best_prompt'], the prompt of the evaluation it kept")
    t.kept_prompt = st.kept_prompt.to(dev) if st.kept_prompt is not None else t.prompt.detach().clone()
    for g in t.opt.param_groups:
        g["lr"] = t.cfg.learning_rate * lr_factor(t.step, t.total, t.warmup)
    try:
        torch.set_rng_state(st.torch_rng)
        if st.noise_rng is not None:
            t.noise_gen.set_state(st.noise_rng)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgument(f"checkpoint RNG state is invalid: {exc}") from None
