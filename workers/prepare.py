"""What a prompt-tuning run starts from: its eval split, its initial prompt and its precision."""

from __future__ import annotations

import random

import torch

import promptbank_kinds as kinds
from promptbank_domain.task import ConfigError, TaskSpec
from promptbank_domain.train_config import TrainConfig
from workers.backbone import FrozenBackbone
from workers.deep_prompt import activations
from workers.heads import Heads

EVAL_CAP = 2000  # rows of the held-out split scored per evaluation


def split(examples: list[tuple[str, str]], cfg: TrainConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Seeded shuffle, then hold out `eval_fraction` (at least one row when asked for any)."""
    rows = list(examples)
    random.Random(cfg.seed).shuffle(rows)
    n_eval = min(EVAL_CAP, max(1, round(len(rows) * cfg.eval_fraction))) if cfg.eval_fraction > 0 else 0
    if len(rows) - n_eval < 1:
        raise ConfigError(f"{len(rows)} examples leave nothing to train on after the eval split")
    return rows[n_eval:], rows[:n_eval]


class BackboneView:
    """What a prompt kind's initialisation reads of the backbone (promptbank_kinds.BackboneView)."""

    def __init__(self, bb: FrozenBackbone):
        self.bb = bb
        self.emb: torch.Tensor = bb.embed.weight.detach().to("cpu", torch.float32)  # (V, H)

    def embeddings(self) -> torch.Tensor:
        return self.emb

    def key_values(self, ids: list[int]) -> torch.Tensor:
        if self.bb.deep is None:
            raise ConfigError(f"backbone {self.bb.info.model!r} has no attention that can carry key/value prefixes")
        return activations(self.bb.model, self.bb.deep, ids).to("cpu")


def init_prompt(heads: Heads, task: TaskSpec, cfg: TrainConfig, stored: tuple[torch.Tensor, str] | None
                ) -> torch.Tensor:
    """The starting prompt of `cfg.prompt_kind`: random, sampled vocabulary, label words, a text, or a stored
    prompt of the same kind (cut or filled up with vocabulary to `num_virtual_tokens`). It starts where the
    kind reads real words (promptbank_kinds `init_rows`): an input prompt as their embeddings `(n, H)`, a deep
    prompt as the keys and values every layer computes for them."""
    view = BackboneView(heads.bb)
    emb = view.emb
    n, gen = cfg.num_virtual_tokens, torch.Generator().manual_seed(cfg.seed)
    special = set(heads.bb.tokenizer.all_special_ids)
    lo, hi = min(1000, emb.shape[0] // 10), min(6000, emb.shape[0])  # common-word range of most vocabularies
    vocab = torch.randint(lo, hi, (n,), generator=gen).tolist()
    kind = kinds.get(cfg.prompt_kind)
    width = kind.width(heads.bb.geometry)
    if not width:
        raise ConfigError(kinds.uncarried(kind.name, heads.bb.geometry, heads.bb.info.model))

    def words(ids: list[int]) -> torch.Tensor:
        return kind.init_rows(view, ids)

    if stored is not None:
        tensor, name = stored
        if name != cfg.prompt_kind or tensor.shape[1] != width:
            raise ConfigError(f"the init prompt is {name!r} of width {tensor.shape[1]}; this job trains a "
                              f"{cfg.prompt_kind!r} prompt of width {width}")
        return torch.cat([tensor.to("cpu", torch.float32), words(vocab)])[:n].clone()
    if cfg.init == "random":
        scale = kind.init_scale(view, vocab)
        return torch.randn(n, words(vocab[:1]).shape[1], generator=gen) * scale
    if cfg.init in ("labels", "text"):
        text = cfg.init_text if cfg.init == "text" else " ".join(task.label_words)
        ids = [i for i in heads.bb.tokenizer(text, add_special_tokens=False)["input_ids"] if i not in special]
        if not ids:
            raise ConfigError(f"init text {text!r} has no tokens in this backbone's vocabulary")
        return words((ids * (n // len(ids) + 1))[:n] if cfg.init == "text" else (ids + vocab)[:n]).clone()
    return words(vocab).clone()


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype a training forward autocasts to, or None for plain fp32."""
    if precision == "bf16" or (precision == "auto" and bf16_supported(device)):
        return torch.bfloat16
    return None
