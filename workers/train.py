"""Prompt tuning: optimise only prompts against a frozen backbone — one job or several at once. An input prompt
is `(n_virtual, H)` vectors before the text, a deep prompt `(n_virtual, width)` keys and values for every
attention layer (workers/deep_prompt.py); jobs of both kinds share forwards.

A `Trainer` (workers/trainer.py) holds one job: its split, prompt, optimizer, schedule, place in its batch order
and keep rule. `train_jobs` drives trainers in lockstep: every step runs one batch of each live job through
shared forwards of the frozen model (rows grouped by length: one forward on a GPU, a few on a CPU) and ONE
backward. A row's output depends only on its own prompt (exact mixed batches) and each prompt only receives its
own job's loss gradient, so every job's run equals training it alone with the same seed. Each job streams
`TrainEvent`s: PROGRESS, EVAL, CHECKPOINT, then RESULT, CANCELLED or FAILED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from promptbank_domain.task import TaskSpec
from workers.grouping import forward_cost, length_groups
from workers.heads import Heads
from workers.protocol import EventKind, TrainEvent
from workers.soft_prompt import RowPrompt, build_batch, prompt_length
from workers.trainer import Trainer

__all__ = ["Trainer", "train_jobs"]


def train_jobs(heads: Heads, trainers: list[Trainer], should_stop: Callable[[str], bool] = lambda _: False
               ) -> Iterator[TrainEvent]:
    """Step every live trainer together: one batch of each job per forward/backward of the frozen model (one
    per autocast dtype, when jobs asked for different precisions)."""
    live = list(trainers)
    for t in [t for t in live if t.done]:  # resumed from its last checkpoint: only its result is left to make
        yield t.result()
        live.remove(t)
    while live:
        for t in [t for t in live if should_stop(t.job_id)]:
            yield t.checkpoint()
            yield t._event(EventKind.CANCELLED)
            live.remove(t)
        if not live:
            return
        for mates in {t.autocast: [u for u in live if u.autocast == t.autocast] for t in live}.values():
            yield from _step(heads, mates)
        for t in [t for t in live if t.done]:
            yield t.result()
            live.remove(t)


def _step(heads: Heads, live: list[Trainer]) -> Iterator[TrainEvent]:
    """One backward for one batch of each trainer (all of one autocast dtype), then their updates. The
    jobs' rows (and the label-text rows of jobs that read them through the prompt) share forwards, grouped
    by length so that co-batching does not pad every job's rows to the longest job's."""
    batches = [t.next_batch() for t in live]
    ids: list[list[int]] = []
    prompts: list[RowPrompt] = []
    tasks: list[TaskSpec] = []
    noise: list[torch.Tensor | None] = []
    spans = []  # per job: (first row, rows, label rows)
    for t, (b, _) in zip(live, batches, strict=True):
        labels = heads.label_ids(t.task) if heads.prompted_labels(t.task, t.prompt) else []
        spans.append((len(ids), len(b), len(labels)))
        ids += b + labels
        prompts += [t.row_prompt(t.train_prompt())] * (len(b) + len(labels))
        tasks += [t.task] * (len(b) + len(labels))
        noise += t.input_noise(b + labels)
    device = heads.bb.embed.weight.device
    dtype = live[0].autocast
    groups = length_groups([len(r) + prompt_length(p) for r, p in zip(ids, prompts, strict=True)], forward_cost(device))
    parts = []
    with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        for g in groups:  # jobs mix in every forward; rows of like length share one (little padding)
            batch = build_batch(heads.bb, [ids[i] for i in g], [prompts[i] for i in g], noise=[noise[i] for i in g])
            parts.append(heads.features(batch, [tasks[i] for i in g]).float())
    feats = torch.cat(parts)[torch.tensor([i for g in groups for i in g]).argsort()]  # back in row order
    losses = []
    for t, (_, y), (start, n, k) in zip(live, batches, spans, strict=True):
        anchors = feats[start + n : start + n + k] if k else None
        losses.append(F.cross_entropy(heads.task_logits(t.task, feats[start : start + n], anchors), y))
    torch.stack(losses).sum().backward()  # prompt i only sees job i's loss: per-job gradients as if alone
    for t, (b, _), loss in zip(live, batches, losses, strict=True):
        yield from t.after_step(float(loss.item()), len(b))
