"""What a prompt-tuning run starts from: its eval split, its initial prompt and its precision."""

from __future__ import annotations

import random

import torch

from workers.heads import Heads
from workers.task import ConfigError, TaskSpec, TrainConfig

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
    vocab = emb[torch.randint(lo, hi, (n,), generator=gen).tolist()]  # (n, H)
    if stored is not None:
        if stored.shape[1] != emb.shape[1]:
            raise ConfigError(f"init prompt width {stored.shape[1]} != backbone hidden size {emb.shape[1]}")
        return torch.cat([stored.to("cpu", torch.float32), vocab])[:n].clone()
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


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype a training forward autocasts to, or None for plain fp32."""
    if precision == "bf16" or (precision == "auto" and bf16_supported(device)):
        return torch.bfloat16
    return None
