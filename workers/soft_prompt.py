"""Apply a soft prompt per row: `inputs_embeds = concat(prompt_i, embed(ids_i))`, padded as the model needs.

Rows of one batch may carry different prompts of different lengths. The prompt always sits next to the
real tokens (never behind padding) and position ids count only real positions, so each row's output
equals running that row alone. Encoders keep their leading [CLS] first (the prompt goes right after it,
where pooling heads expect [CLS] at position 0); LMs get the prompt before every token, exactly as PEFT
prompt tuning does, so PEFT adapters give the same logits here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from promptbank_api.errors import InvalidArgument
from workers.backbone import ENCODER, MASKED_LM, FrozenBackbone


@dataclass
class PromptedBatch:
    inputs_embeds: torch.Tensor  # (B, T, H)
    attention_mask: torch.Tensor  # (B, T) 1 on prompt + text, 0 on padding
    position_ids: torch.Tensor  # (B, T) 0..L_i-1 over each row's real positions
    text_mask: torch.Tensor  # (B, T) 1 on the row's own tokens only (not prompt, not padding)
    prompt_mask: torch.Tensor  # (B, T) 1 on the row's prompt positions only
    last_index: torch.Tensor  # (B,) index of each row's last real position
    mask_index: torch.Tensor  # (B,) index of the [MASK] token (masked LMs), else = last_index


def tokenize(backbone: FrozenBackbone, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per row, truncated. Masked LMs get a [MASK] before the closing special token to score."""
    tok = backbone.tokenizer
    if not texts:
        return []
    if backbone.architecture != MASKED_LM:
        enc = tok(texts, truncation=True, max_length=max_length, add_special_tokens=True)
        return [list(ids) for ids in enc["input_ids"]]
    enc = tok(texts, truncation=True, max_length=max_length - 1, add_special_tokens=True)
    special = set(tok.all_special_ids)
    out = []
    for ids in enc["input_ids"]:
        ids = list(ids)
        at = len(ids) - 1 if ids and ids[-1] in special else len(ids)
        out.append(ids[:at] + [tok.mask_token_id] + ids[at:])
    return out


def build_batch(
    backbone: FrozenBackbone,
    token_ids: list[list[int]],
    prompts: list[torch.Tensor],
    noise: list[torch.Tensor | None] | None = None,
) -> PromptedBatch:
    """Assemble one batch; `prompts[i]` is row i's `(n_i, H)` prompt (may require grad). `noise[i]`, when
    given, is added to row i's own token embeddings, `(len(token_ids[i]), H)` (training's input noise)."""
    if len(token_ids) != len(prompts) or (noise is not None and len(noise) != len(prompts)):
        raise ValueError(f"{len(token_ids)} rows but {len(prompts)} prompts / {len(noise or prompts)} noise rows")
    tok_ = backbone.tokenizer
    special = set(tok_.all_special_ids) if backbone.architecture in (ENCODER, MASKED_LM) else set()
    mask_id = tok_.mask_token_id if backbone.architecture == MASKED_LM else None
    device = backbone.embed.weight.device
    n_tok = [len(ids) for ids in token_ids]
    lengths = [n + int(p.shape[0]) for n, p in zip(n_tok, prompts, strict=True)]
    T = max(lengths)
    if T > backbone.max_positions:
        raise InvalidArgument(f"prompt + text is {T} positions; the backbone allows {backbone.max_positions} "
                              f"(use a shorter prompt or text)")
    pad_id = tok_.pad_token_id or 0
    ids = torch.full((len(token_ids), max(n_tok)), pad_id, dtype=torch.long)
    for i, row in enumerate(token_ids):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    tok = backbone.embed(ids.to(device))  # (B, Tt, H)

    rows, masks, texts, positions, last, masked = [], [], [], [], [], []
    for i, (row, prompt) in enumerate(zip(token_ids, prompts, strict=True)):
        off = 1 if row and row[0] in special else 0  # encoders: keep [CLS] first, prompt right after it
        n, p, L = len(row), int(prompt.shape[0]), lengths[i]
        own = tok[i, :n] if noise is None or noise[i] is None else tok[i, :n] + noise[i].to(tok)
        seq = torch.cat([own[:off], prompt.to(tok.dtype), own[off:]])  # (L, H)
        text = torch.cat([torch.ones(off), torch.zeros(p), torch.ones(n - off)])  # (L,)
        pad = T - L  # right padding: the prompt sits next to the real tokens, never behind pads
        rows.append(F.pad(seq, (0, 0, 0, pad)))  # (T, H)
        masks.append(F.pad(torch.ones(L), (0, pad)))
        texts.append(F.pad(text, (0, pad)))
        positions.append(F.pad(torch.arange(L), (0, pad)))
        last.append(L - 1)
        if mask_id is not None and mask_id in row:
            j = len(row) - 1 - row[::-1].index(mask_id)
            masked.append(j if j < off else j + p)
        else:
            masked.append(L - 1)
    return PromptedBatch(
        inputs_embeds=torch.stack(rows),
        attention_mask=torch.stack(masks).to(device=device, dtype=torch.long),
        position_ids=torch.stack(positions).to(device),
        text_mask=torch.stack(texts).to(device),
        prompt_mask=(torch.stack(masks) - torch.stack(texts)).to(device),
        last_index=torch.tensor(last, device=device),
        mask_index=torch.tensor(masked, device=device),
    )
