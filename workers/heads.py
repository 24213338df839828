"""Classification without a trained head, so the prompt stays the whole adaptation.

- encoder (no LM head): cosine of a mean-pooled output with label-text "anchors". The task's `pooling` says
  how: "all" (default) pools every position of the prompted row and "prompt" only the prompt's own, for the
  input and for each label text alike: both are read through the prompt, so the prompt learns the question
  and the answers' places together; "text" pools the text's tokens and compares them with the plain
  label-text embeddings;
- causal LM: logits of each label word's first token at the row's last position;
- masked LM: logits of each label word's first token at a [MASK] appended to the text;
- seq2seq: logits of each label word's first token as the decoder's first token.
Each row is scored against its own task's labels, so one forward serves a batch of many tasks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptbank_domain.task import ConfigError, TaskSpec
from workers.backbone import CAUSAL_LM, ENCODER, MASKED_LM, SEQ2SEQ, FrozenBackbone
from workers.deep_prompt import prefixes
from workers.soft_prompt import PromptedBatch, RowPrompt, build_batch, prompt_length, tokenize

SIMILARITY_SCALE = 20.0  # cosine in [-1, 1] -> logits; the usual sentence-embedding contrastive scale
LABEL_MAX_TOKENS = 64  # label texts are short; longer ones are truncated


class Heads:
    """Per-task label tensors for one backbone, computed once and cached by task content."""

    def __init__(self, backbone: FrozenBackbone):
        self.bb = backbone
        self._label_cache: dict[tuple[str, ...], torch.Tensor] = {}
        self._label_ids_cache: dict[tuple[str, ...], list[list[int]]] = {}
        arch = backbone.architecture
        self._lm_head: torch.nn.Module | None = None
        if arch == MASKED_LM:  # the MLM head (transform + decoder), applied only at the mask position
            model = backbone.model
            self._lm_head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
            if self._lm_head is None:
                raise ConfigError(f"masked LM {type(model).__name__} has no 'cls' or 'lm_head' module to score with")

    def labels_for(self, task: TaskSpec) -> torch.Tensor:
        """Encoder: (K, H) unit label-text embeddings. LMs: (K,) label-word token ids."""
        key = task.label_texts if self.bb.architecture == ENCODER else task.label_words
        if key not in self._label_cache:
            # Never cache an inference-mode tensor: the first use may be a classify call under
            # inference_mode, and training would then fail to save it for backward.
            with torch.inference_mode(False):
                if self.bb.architecture == ENCODER:
                    self._label_cache[key] = self._label_text_embeddings(key)
                else:
                    self._label_cache[key] = self._word_ids(key)
        return self._label_cache[key]

    @torch.no_grad()
    def _label_text_embeddings(self, texts: tuple[str, ...]) -> torch.Tensor:
        enc = self.bb.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.bb.embed.weight.device)
        with torch.autocast(enc["input_ids"].device.type, enabled=False):  # cached: full precision whoever asks
            out = self.bb.model(**enc).last_hidden_state  # (K, T, H)
        return F.normalize(mean_pool(out, enc["attention_mask"].to(out.device)), dim=-1).to(enc["input_ids"].device)

    def _word_ids(self, words: tuple[str, ...]) -> torch.Tensor:
        ids = []
        for w in words:
            toks = self.bb.tokenizer(" " + w.strip(), add_special_tokens=False)["input_ids"]
            if not toks:
                raise ConfigError(f"label word {w!r} has no tokens in this backbone's vocabulary")
            ids.append(toks[0])
        if len(set(ids)) != len(ids):
            raise ConfigError(f"label words {list(words)} do not start with distinct tokens; choose other label_words")
        return torch.tensor(ids, device=self.bb.embed.weight.device)

    def features(self, batch: PromptedBatch, tasks: list[TaskSpec]) -> torch.Tensor:
        """One forward of the frozen model. Encoder: (B, H) unit pooled outputs, row i pooled as `tasks[i]`
        says; LMs: (B, V) logits to score. On the backbone's input device, whichever device the last layer
        of a split replica is on."""
        kw = {"inputs_embeds": batch.inputs_embeds, "attention_mask": batch.attention_mask}
        if self.bb.accepts_position_ids:
            kw["position_ids"] = batch.position_ids
        with prefixes(batch.prefixes):
            return self._features(batch, tasks, kw).to(batch.inputs_embeds.device)

    def _features(self, batch: PromptedBatch, tasks: list[TaskSpec], kw: dict[str, torch.Tensor]) -> torch.Tensor:
        arch, model = self.bb.architecture, self.bb.model
        rows = torch.arange(batch.inputs_embeds.shape[0], device=batch.inputs_embeds.device)
        hidden: torch.Tensor  # (B, T, H); the model's outputs are untyped
        if arch == ENCODER:
            hidden = model(**kw).last_hidden_state
            return F.normalize(mean_pool(hidden, pooling_mask(batch, tasks).to(hidden.device)), dim=-1)
        out: torch.Tensor  # (B, V)
        if arch == SEQ2SEQ:
            start = torch.full((len(rows), 1), self.bb.decoder_start_id, device=rows.device)
            out = model(**kw, decoder_input_ids=start).logits[:, 0]
            return out
        hidden = model.base_model(**kw).last_hidden_state
        head = model.get_output_embeddings() if arch == CAUSAL_LM else self._lm_head
        if head is None:  # (__init__ found the MLM head, or refused the backbone)
            raise ConfigError(f"{type(model).__name__} has no output head to score with")
        at = batch.last_index if arch == CAUSAL_LM else batch.mask_index
        out = head(hidden[rows.to(hidden.device), at.to(hidden.device)])
        return out

    def features_under(self, task: TaskSpec, prompt: RowPrompt, ids: list[list[int]]) -> torch.Tensor:
        """`features` of token rows that all share one prompt and one task (evaluation, anchors, transfer)."""
        return self.features(build_batch(self.bb, ids, [prompt] * len(ids)), [task] * len(ids))

    def prompted_labels(self, task: TaskSpec, prompt: RowPrompt) -> bool:
        """Whether `task`'s label texts are read through `prompt` (encoders pooling "all" or "prompt")."""
        return self.bb.architecture == ENCODER and task.pooling != "text" and prompt_length(prompt) > 0

    def label_ids(self, task: TaskSpec) -> list[list[int]]:
        """Token ids of the label texts, as rows to run through a prompt (tokenized once per label set:
        training asks every step)."""
        if task.label_texts not in self._label_ids_cache:
            self._label_ids_cache[task.label_texts] = tokenize(self.bb, list(task.label_texts), LABEL_MAX_TOKENS)
        return self._label_ids_cache[task.label_texts]

    def anchors(self, task: TaskSpec, prompt: RowPrompt) -> torch.Tensor:
        """What `task`'s rows under `prompt` are scored against: (K, H) unit label texts read through the
        prompt (differentiable in it), or `labels_for(task)` when the task does not read them so."""
        if not self.prompted_labels(task, prompt):
            return self.labels_for(task)
        return self.features_under(task, prompt, self.label_ids(task))

    def task_logits(self, task: TaskSpec, feats: torch.Tensor, anchors: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H|V) features of rows sharing one task (and prompt) -> (B, K) class logits: the one scoring
        rule. `anchors`: from `anchors(task, prompt)`; None means the plain `labels_for(task)`."""
        lab = self.labels_for(task) if anchors is None else anchors
        if lab.dim() == 2:  # label texts in the backbone's dtype; training's features are fp32
            return SIMILARITY_SCALE * feats @ lab.to(feats.device, feats.dtype).T
        return feats[:, lab.to(feats.device)]

    def class_logits(
        self, tasks: list[TaskSpec], feats: torch.Tensor, anchors: list[torch.Tensor | None]
    ) -> list[torch.Tensor]:
        """Row i's (K_i,) class logits from its features, its own task and its prompt's anchors."""
        return [self.task_logits(task, feats[i : i + 1], anchors[i])[0] for i, task in enumerate(tasks)]


def pooling_mask(batch: PromptedBatch, tasks: list[TaskSpec]) -> torch.Tensor:
    """(B, T) positions each row pools, as its task says: all its positions, its prompt's, or its text's. A row
    without a prompt (zero-shot) pools its text whatever the task says."""
    if len(tasks) != batch.text_mask.shape[0]:
        raise ValueError(f"{batch.text_mask.shape[0]} rows but {len(tasks)} tasks")
    dev = batch.text_mask.device
    has_prompt = batch.prompt_mask.sum(1) > 0
    take_prompt = torch.tensor([t.pooling != "text" for t in tasks], device=dev) & has_prompt
    take_text = torch.tensor([t.pooling != "prompt" for t in tasks], device=dev) | ~has_prompt
    return batch.prompt_mask * take_prompt.unsqueeze(1) + batch.text_mask * take_text.unsqueeze(1)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H) mean over masked positions."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
