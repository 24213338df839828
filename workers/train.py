"""Prompt tuning: optimise only a `(n_virtual, H)` prompt against a frozen backbone.

`train_prompt` is a generator of plain-dict events (PROGRESS, EVAL, then RESULT or CANCELLED) so that a
Ray actor can stream it to the coordinator step by step.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from bank.codec import encode_prompt
from workers.heads import SIMILARITY_SCALE, Heads
from workers.soft_prompt import build_batch, tokenize
from workers.task import ConfigError, TaskSpec, TrainConfig

Event = dict[str, Any]
EVAL_CAP = 2000  # rows of the held-out split scored per evaluation


def split(examples: list[tuple[str, str]], cfg: TrainConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Seeded shuffle, then hold out `eval_fraction` (at least one row when asked for any)."""
    rows = list(examples)
    random.Random(cfg.seed).shuffle(rows)
    n_eval = min(EVAL_CAP, max(1, round(len(rows) * cfg.eval_fraction))) if cfg.eval_fraction > 0 else 0
    if len(rows) - n_eval < 1:
        raise ConfigError(f"{len(rows)} examples leave nothing to train on after the eval split")
    return rows[n_eval:], rows[:n_eval]


def init_prompt(heads: Heads, task: TaskSpec, cfg: TrainConfig, stored: torch.Tensor | None) -> torch.Tensor:
    """The starting `(n, H)` prompt: random, sampled vocabulary, label words, a text, or a stored prompt."""
    emb = heads.bb.embed.weight.detach().to("cpu", torch.float32)  # (V, H)
    n, gen = cfg.num_virtual_tokens, torch.Generator().manual_seed(cfg.seed)
    special = set(heads.bb.tokenizer.all_special_ids)
    lo, hi = min(1000, emb.shape[0] // 10), min(6000, emb.shape[0])  # common-word range of most vocabularies
    vocab = emb[[i for i in torch.randint(lo, hi, (n,), generator=gen).tolist()]]  # (n, H)
    if stored is not None:
        if stored.shape[1] != emb.shape[1]:
            raise ConfigError(f"init prompt width {stored.shape[1]} != backbone hidden size {emb.shape[1]}")
        return torch.cat([stored.to(torch.float32), vocab])[:n].clone()
    if cfg.init == "random":
        return torch.randn(n, emb.shape[1], generator=gen) * emb.std()
    if cfg.init in ("labels", "text"):
        text = cfg.init_text if cfg.init == "text" else " ".join(task.label_words)
        ids = [i for i in heads.bb.tokenizer(text, add_special_tokens=False)["input_ids"] if i not in special]
        if not ids:
            raise ConfigError(f"init text {text!r} has no tokens in this backbone's vocabulary")
        picked = emb[(ids * (n // len(ids) + 1))[:n]]
        return picked.clone() if cfg.init == "text" else torch.cat([emb[ids], vocab])[:n].clone()
    return vocab.clone()


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def evaluate(heads: Heads, task: TaskSpec, prompt: torch.Tensor, ids: list[list[int]], y: torch.Tensor, bs: int) -> dict[str, float]:
    losses, correct = [], 0
    for i in range(0, len(ids), bs):
        feats = heads.features(build_batch(heads.bb, ids[i : i + bs], [prompt] * len(ids[i : i + bs])))
        logits = class_logits(heads, task, feats)
        losses.append(F.cross_entropy(logits, y[i : i + bs], reduction="sum").item())
        correct += int((logits.argmax(-1) == y[i : i + bs]).sum())
    return {"eval_accuracy": correct / max(1, len(ids)), "eval_loss": sum(losses) / max(1, len(ids))}


def class_logits(heads: Heads, task: TaskSpec, feats: torch.Tensor) -> torch.Tensor:
    """(B, H|V) features of rows sharing one task -> (B, K) class logits (same rule as `Heads.class_logits`)."""
    lab = heads.labels_for(task)
    return SIMILARITY_SCALE * feats @ lab.T if lab.dim() == 2 else feats[:, lab]


def train_prompt(
    heads: Heads,
    task: TaskSpec,
    examples: list[tuple[str, str]],
    cfg: TrainConfig,
    stored_init: torch.Tensor | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Event]:
    """Train one prompt; yields PROGRESS/EVAL events and finally RESULT (prompt bytes + metrics) or CANCELLED."""
    label_index = {label: k for k, label in enumerate(task.labels)}
    unknown = sorted({lab for _, lab in examples if lab not in label_index})
    if unknown:
        raise ConfigError(f"labels {unknown[:5]} are not among the task's labels {list(task.labels)}")
    torch.manual_seed(cfg.seed)
    train_rows, eval_rows = split(examples, cfg)
    tr_ids = tokenize(heads.bb, [t for t, _ in train_rows], cfg.max_length)
    dev = heads.bb.embed.weight.device
    tr_y = torch.tensor([label_index[lab] for _, lab in train_rows], device=dev)
    ev_ids = tokenize(heads.bb, [t for t, _ in eval_rows], cfg.max_length)
    ev_y = torch.tensor([label_index[lab] for _, lab in eval_rows], device=dev)

    prompt = torch.nn.Parameter(init_prompt(heads, task, cfg, stored_init).to(dev))  # (n, H): the only trainable tensor
    opt = torch.optim.AdamW([prompt], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(tr_ids) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = max(1, int(total * cfg.warmup_fraction))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    order_rng = random.Random(cfg.seed + 1)

    majority = Counter(ev_y.tolist()).most_common(1)[0][1] / len(ev_y) if len(ev_y) else 0.0
    best: dict[str, float] = {}
    best_prompt = prompt.detach().clone()
    step, t0, seen, window = 0, time.perf_counter(), 0, (time.perf_counter(), 0)
    for epoch in range(cfg.epochs):
        order = list(range(len(tr_ids)))
        order_rng.shuffle(order)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            if should_stop():
                yield {"kind": "CANCELLED", "step": step, "total_steps": total}
                return
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            feats = heads.features(build_batch(heads.bb, [tr_ids[i] for i in idx], [prompt] * len(idx)))
            loss = F.cross_entropy(class_logits(heads, task, feats), tr_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(idx)
            if step % cfg.progress_every == 0 or step == total:
                now = time.perf_counter()
                eps = (seen - window[1]) / max(1e-9, now - window[0])
                window = (now, seen)
                rate = step / max(1e-9, now - t0)
                yield {
                    "kind": "PROGRESS",
                    "step": step,
                    "total_steps": total,
                    "loss": float(loss.item()),
                    "examples_per_second": eps,
                    "eta_seconds": (total - step) / max(1e-9, rate),
                    "epoch": epoch,
                }
        if ev_ids and ((epoch + 1) % cfg.eval_every_epochs == 0 or epoch == cfg.epochs - 1 or step >= total):
            metrics = evaluate(heads, task, prompt.detach(), ev_ids, ev_y, max(32, cfg.batch_size))
            yield {"kind": "EVAL", "step": step, "total_steps": total, "metrics": metrics, "epoch": epoch}
            if not best or metrics["eval_accuracy"] > best["eval_accuracy"]:
                best, best_prompt = metrics, prompt.detach().clone()
        if step >= total:
            break
    if not ev_ids:
        best_prompt = prompt.detach().clone()
    final = dict(best)
    final.update(
        majority_rate=majority,
        train_examples=float(len(train_rows)),
        eval_examples=float(len(eval_rows)),
        steps=float(step),
        train_seconds=time.perf_counter() - t0,
    )
    yield {"kind": "RESULT", "step": step, "total_steps": total, "metrics": final, "prompt": encode_prompt(best_prompt)}
