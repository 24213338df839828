"""One prompt-tuning job: its split, prompt, optimizer, schedule, place in its batch order, evaluations, keep
rule and checkpoints. An input prompt is `(n_virtual, H)` vectors before the text, a deep prompt
`(n_virtual, width)` keys and values for every attention layer (workers/deep_prompt.py). workers/train.py steps
trainers together.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

import promptbank_kinds as kinds
from bank.codec import encode_prompt
from promptbank_domain.task import ConfigError, TaskSpec
from promptbank_domain.train_config import TrainConfig
from promptbank_kinds import Row
from workers.batch_order import epoch_batches, token_dropout
from workers.heads import Heads
from workers.prepare import autocast_dtype, init_prompt, split
from workers.protocol import EventKind, TrainEvent
from workers.resume import restore, snapshot
from workers.schedule import (
    COLLAPSE_SPREAD,
    KeepRule,
    debiased_average,
    eval_metrics,
    lr_factor,
    probability_spread,
)
from workers.soft_prompt import RowPrompt, tokenize


class Trainer:
    """One job's prompt-tuning state; stepping is driven by `train_jobs`."""

    def __init__(
        self,
        job_id: str,
        heads: Heads,
        task: TaskSpec,
        examples: list[tuple[str, str]],
        cfg: TrainConfig,
        stored_init: tuple[torch.Tensor, str] | None = None,
        resume: bytes | None = None,
    ):
        self.job_id, self.heads, self.task, self.cfg = job_id, heads, task, cfg
        index = {label: k for k, label in enumerate(task.labels)}
        unknown = sorted({lab for _, lab in examples if lab not in index})
        if unknown:
            raise ConfigError(f"labels {unknown[:5]} are not among the task's labels {list(task.labels)}")
        torch.manual_seed(cfg.seed)
        train_rows, eval_rows = split(examples, cfg)
        dev = heads.bb.embed.weight.device
        self.tr_ids = tokenize(heads.bb, [t for t, _ in train_rows], cfg.max_length)
        self.tr_y = torch.tensor([index[lab] for _, lab in train_rows], device=dev)
        self.ev_ids = tokenize(heads.bb, [t for t, _ in eval_rows], cfg.max_length)
        self.truncated = sum(len(r) >= cfg.max_length for r in self.tr_ids + self.ev_ids)  # cut at max_length
        self.ev_y = torch.tensor([index[lab] for _, lab in eval_rows], device=dev)
        start = init_prompt(heads, task, cfg, stored_init).to(dev)
        # What we train: the prompt itself, or what its kind trains it through (a deep prompt's
        # `prefix_projection` MLP). Either way `self.prompt` holds the prompt's current value; it is a parameter
        # only when trained directly.
        self.projection = kinds.get(cfg.prompt_kind).trainable(start, heads.bb.hidden_size, cfg.prefix_projection,
                                                                cfg.seed)
        self.prompt = torch.nn.Parameter(start) if self.projection is None else start.clone()
        self.start = start.detach().clone()  # (n, H) the initial prompt: what a collapse is told apart from
        self.ema = torch.zeros_like(self.prompt, requires_grad=False)  # `average`'s accumulator (`ema_decay`)
        self._special = set(heads.bb.tokenizer.all_special_ids)  # never dropped ([CLS], [SEP], [MASK], ...)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed)  # the job's own: co-batching can't reorder draws
        self.autocast = autocast_dtype(cfg.precision, dev)
        self.opt = torch.optim.AdamW(self.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.tr_ids) / cfg.batch_size)
        self.total = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total = min(self.total, cfg.max_steps)
        self.warmup = max(1, int(self.total * cfg.warmup_fraction))
        self.majority = Counter(self.ev_y.tolist()).most_common(1)[0][1] / len(self.ev_y) if len(self.ev_y) else 0.0
        self.n_train, self.n_eval = len(train_rows), len(eval_rows)
        full = self.autocast is None and heads.bb.dtype == "fp32"  # a half-precision backbone rounds as autocast does
        self.collapse_spread = COLLAPSE_SPREAD["fp32" if full else "half"]
        self._start_spread: float | None = None  # how differently the initial prompt scores the eval rows
        self.step = 0
        self.keep = KeepRule(cfg.select_on, cfg.patience)  # early stopping and which evaluation's prompt is kept
        self.kept_prompt = self.prompt.detach().clone()
        self._epoch_batches: dict[int, list[list[int]]] = {}
        self._t0, self._window, self.seconds = time.perf_counter(), (time.perf_counter(), 0), 0.0
        self.seen = 0
        if resume:
            restore(self, resume)

    # ------------------------------------------------------------ batches

    def _batches(self, epoch: int) -> list[list[int]]:
        """Epoch e's batches (workers/batch_order.py), kept while the epoch lasts."""
        if epoch not in self._epoch_batches:
            lengths = [len(r) for r in self.tr_ids]
            self._epoch_batches = {epoch: epoch_batches(lengths, self.cfg.batch_size, self.cfg.seed, epoch)}
        return self._epoch_batches[epoch]

    def next_batch(self) -> tuple[list[list[int]], torch.Tensor]:
        epoch, b = divmod(self.step, self.steps_per_epoch)
        idx = self._batches(epoch)[b]
        return [self.token_dropout(self.tr_ids[i], epoch, i) for i in idx], self.tr_y[idx]

    def token_dropout(self, row: list[int], epoch: int, i: int) -> list[int]:
        """Row i's tokens in `epoch`, with the job's `token_dropout` (workers/batch_order.py)."""
        return token_dropout(row, self.cfg.token_dropout, self._special, self.cfg.seed, epoch, i)

    def parameters(self) -> list[torch.Tensor]:
        """What the optimizer moves: the prompt, or its projection's embedding and MLP."""
        return [self.prompt] if self.projection is None else list(self.projection.parameters())

    def train_prompt(self) -> torch.Tensor:
        """The prompt a training step runs, with the graph back to what is trained (computed once per step)."""
        return self.prompt if self.projection is None else self.projection()

    def follow_projection(self) -> None:
        """After the projection moved (a step, a restore), `self.prompt` holds the prefix it now computes."""
        if self.projection is not None:
            with torch.no_grad():
                self.prompt = self.projection()

    def row_prompt(self, prompt: torch.Tensor) -> RowPrompt:
        """`prompt` (this job's parameter, its average or a kept one) as `build_batch` reads it: its kind."""
        return Row(prompt, self.cfg.prompt_kind)

    def input_noise(self, rows: list[list[int]]) -> list[torch.Tensor | None]:
        """Per row, `(len(row), H)` uniform noise of amplitude `input_noise / sqrt(L * H)` for its token
        embeddings, L its prompted length (NEFTune, Jain et al. 2023): the prompt must read through small
        perturbations of its inputs, which generalises better. Drawn on the CPU from the job's own generator
        in the job's row order, so padding, grouping, co-batching and the device leave the draws unchanged."""
        alpha, n, h = self.cfg.input_noise, self.prompt.shape[0], self.heads.bb.hidden_size
        if not alpha:
            return [None] * len(rows)
        return [(torch.rand(len(r), h, generator=self.noise_gen) * 2 - 1) * (alpha / math.sqrt((len(r) + n) * h))
                for r in rows]

    @property
    def done(self) -> bool:
        return self.step >= self.total or self.stopped_early

    @property
    def stopped_early(self) -> bool:
        return self.keep.stopped_early

    @property
    def best(self) -> dict[str, float]:
        return self.keep.best

    @property
    def kept(self) -> dict[str, float]:
        return self.keep.kept

    # ------------------------------------------------------------ after each step

    def after_step(self, loss: float, rows: int) -> Iterator[TrainEvent]:
        if self.cfg.max_grad_norm:  # this job's parameters only: co-batched jobs clip as if alone
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.cfg.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.follow_projection()
        self._update_average()
        self.seen += rows
        for g in self.opt.param_groups:  # the schedule is a pure function of the step: exact after resume
            g["lr"] = self.cfg.learning_rate * lr_factor(self.step, self.total, self.warmup)
        if self.step % self.cfg.progress_every == 0 or self.step == self.total:
            now = time.perf_counter()
            eps = (self.seen - self._window[1]) / max(1e-9, now - self._window[0])
            self._window = (now, self.seen)
            rate = self.seen / max(1e-9, now - self._t0)
            rows_left = (self.total - self.step) * self.cfg.batch_size
            yield self._event(EventKind.PROGRESS, loss=loss, examples_per_second=eps, eta_seconds=rows_left / max(1e-9, rate),
                              epoch=(self.step - 1) // self.steps_per_epoch)
        epoch_end = self.step % self.steps_per_epoch == 0
        epoch = (self.step - 1) // self.steps_per_epoch
        if self.ev_ids and ((epoch_end and (epoch + 1) % self.cfg.eval_every_epochs == 0) or self.step == self.total):
            yield self._evaluate()
            yield self.checkpoint()
        elif self.step % self.cfg.checkpoint_every == 0:
            yield self.checkpoint()

    @torch.no_grad()
    def _update_average(self) -> None:
        """Polyak averaging: an exponential moving average of the prompt over steps. With input noise and
        small batches the prompt jitters from step to step; its average holds steadier on held-out rows
        (docs/research.md)."""
        d = self.cfg.ema_decay
        self.ema.mul_(d).add_(self.prompt.detach(), alpha=1.0 - d)

    @property
    def average(self) -> torch.Tensor:
        """The prompt that evaluations score and the job keeps: the EMA, bias-corrected as Adam's moments are
        (zero start divided by 1 - decay^step), so it is a weighted mean of the steps' prompts from the first
        step on, never pulled towards zero or the init. Decay 0: the prompt itself."""
        if self.step == 0:
            return self.prompt.detach().clone()
        return debiased_average(self.ema, self.cfg.ema_decay, self.step)

    @torch.no_grad()
    def _eval_logits(self, prompt: torch.Tensor) -> torch.Tensor:
        """`(rows, labels)` fp32 logits of the eval split under `prompt`."""
        bs, row = max(32, self.cfg.batch_size), self.row_prompt(prompt)
        anchors = self.heads.anchors(self.task, row)
        return torch.cat([self.heads.task_logits(self.task, self.heads.features_under(self.task, row, self.ev_ids[i : i + bs]),
                                                 anchors).float() for i in range(0, len(self.ev_ids), bs)])

    @torch.no_grad()
    def _evaluate(self) -> TrainEvent:
        prompt = self.average
        logits = self._eval_logits(prompt)  # (R, K)
        row_losses = F.cross_entropy(logits, self.ev_y, reduction="none").cpu()
        metrics = eval_metrics(row_losses.double(), int((logits.argmax(-1) == self.ev_y).sum()))
        if probability_spread(logits) < self.collapse_spread and self._start_told_rows_apart():
            metrics["collapsed"] = 1.0  # every row scored alike: never kept (KeepRule), reported in the event
        self._select(metrics, prompt)
        return self._event(EventKind.EVAL, metrics=metrics, stopped_early=self.stopped_early)

    def _start_told_rows_apart(self) -> bool:
        """Whether the job's initial prompt scored the eval rows differently: only then is scoring them alike a
        collapse, not a backbone (or an eval split) that never told them apart. Asked only when an evaluation
        looks collapsed, once per run."""
        if self._start_spread is None:
            distinct = len({tuple(r) for r in self.ev_ids}) > 1
            self._start_spread = probability_spread(self._eval_logits(self.start)) if distinct else 0.0
        return self._start_spread >= self.collapse_spread

    def _select(self, metrics: dict[str, float], prompt: torch.Tensor) -> None:
        if self.keep.observe(metrics):
            self.kept_prompt = prompt.clone()

    def _event(self, kind: EventKind, **kw: Any) -> TrainEvent:
        return TrainEvent(kind=kind, job=self.job_id, step=self.step, total_steps=self.total, **kw)

    # ------------------------------------------------------------ checkpoints (workers/checkpoint.py)

    def checkpoint(self) -> TrainEvent:
        """What resuming needs, and nothing more (workers/resume.py)."""
        return self._event(EventKind.CHECKPOINT, checkpoint=snapshot(self).to_bytes())

    # ------------------------------------------------------------ the end

    def result(self) -> TrainEvent:
        """The kept prompt and its metrics; FAILED, naming the collapse, when every evaluation had collapsed."""
        if self.keep.collapsed_evals and not self.kept:
            return self._event(EventKind.FAILED, error=(
                f"training collapsed: the prompt scored every held-out row alike in each of the last "
                f"{self.keep.collapsed_evals} evaluations (up to step {self.step}; an eval_loss of ln "
                f"{len(self.task.labels)} = {math.log(len(self.task.labels)):.4f} when it scores every label alike) "
                f"and no earlier evaluation was sound, so there is no prompt to keep; lower learning_rate or set "
                f"max_grad_norm (e.g. 1)"))
        prompt = self.kept_prompt if self.kept else self.average
        metrics = dict(self.kept)
        if self.keep.collapsed_evals:  # the run ended collapsed: the kept prompt is the last good evaluation's
            metrics["collapsed_evals"] = float(self.keep.collapsed_evals)
        metrics.update(majority_rate=self.majority, train_examples=float(self.n_train), eval_examples=float(self.n_eval),
                       truncated_examples=float(self.truncated),
                       steps=float(self.step), train_seconds=time.perf_counter() - self._t0,
                       stopped_early=float(self.stopped_early))
        return self._event(EventKind.RESULT, metrics=metrics, prompt=encode_prompt(prompt, kind=self.cfg.prompt_kind))
