"""Classification without a trained head, so the prompt stays the whole adaptation.

- encoder (no LM head): cosine of the mean-pooled text embedding with embeddings of the label texts;
- causal LM: logits of each label word's first token at the row's last position.
Each row is scored against its own task's labels, so one forward serves a batch of many tasks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workers.backbone import CAUSAL_LM, ENCODER, FrozenBackbone
from workers.soft_prompt import PromptedBatch, build_batch, tokenize
from workers.task import ConfigError, TaskSpec

SIMILARITY_SCALE = 20.0  # cosine in [-1, 1] -> logits; the usual sentence-embedding contrastive scale


class Heads:
    """Per-task label tensors for one backbone, computed once and cached by task content."""

    def __init__(self, backbone: FrozenBackbone):
        self.bb = backbone
        self._label_cache: dict[tuple[str, ...], torch.Tensor] = {}
        if backbone.architecture not in (ENCODER, CAUSAL_LM):
            raise ConfigError(f"architecture {backbone.architecture!r} is not supported for classification yet")

    def labels_for(self, task: TaskSpec) -> torch.Tensor:
        """Encoder: (K, H) unit label-text embeddings. Causal LM: (K,) label-word token ids."""
        key = task.label_texts if self.bb.architecture == ENCODER else task.label_words
        if key not in self._label_cache:
            self._label_cache[key] = self._label_text_embeddings(key) if self.bb.architecture == ENCODER else self._word_ids(key)
        return self._label_cache[key]

    @torch.no_grad()
    def _label_text_embeddings(self, texts: tuple[str, ...]) -> torch.Tensor:
        enc = self.bb.tokenizer(list(texts), padding=True, return_tensors="pt")
        out = self.bb.model(**enc).last_hidden_state  # (K, T, H)
        return F.normalize(mean_pool(out, enc["attention_mask"]), dim=-1)  # (K, H)

    def _word_ids(self, words: tuple[str, ...]) -> torch.Tensor:
        ids = []
        for w in words:
            toks = self.bb.tokenizer(" " + w.strip(), add_special_tokens=False)["input_ids"]
            if not toks:
                raise ConfigError(f"label word {w!r} has no tokens in this backbone's vocabulary")
            ids.append(toks[0])
        if len(set(ids)) != len(ids):
            raise ConfigError(f"label words {list(words)} do not start with distinct tokens; choose other label_words")
        return torch.tensor(ids)

    def features(self, batch: PromptedBatch) -> torch.Tensor:
        """One forward of the frozen model. Encoder: (B, H) unit pooled text; causal LM: (B, V) next-token logits."""
        kw = dict(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        if self.bb.architecture == ENCODER:
            hidden = self.bb.model(**kw).last_hidden_state  # (B, T, H)
            return F.normalize(mean_pool(hidden, batch.text_mask), dim=-1)
        hidden = self.bb.model.base_model(**kw).last_hidden_state  # (B, T, H)
        last = hidden[torch.arange(hidden.shape[0]), batch.last_index]  # (B, H)
        return self.bb.model.get_output_embeddings()(last)  # (B, V)

    def logits(
        self, texts: list[str], prompts: list[torch.Tensor], tasks: list[TaskSpec], max_length: int
    ) -> list[torch.Tensor]:
        """Row i's (K_i,) class logits under its own prompt and task, all rows in one forward."""
        ids = tokenize(self.bb, texts, max_length)
        feats = self.features(build_batch(self.bb, ids, prompts))
        out = []
        for i, task in enumerate(tasks):
            lab = self.labels_for(task)
            if self.bb.architecture == ENCODER:
                out.append(SIMILARITY_SCALE * feats[i] @ lab.T)  # (K,)
            else:
                out.append(feats[i, lab])  # (K,)
        return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H) mean over masked positions."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
