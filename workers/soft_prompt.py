"""Apply a soft prompt per row: `inputs_embeds = concat(prompt_i, embed(ids_i))`, padded as the model needs.
What a row's prompt puts where is its kind's (promptbank_kinds `apply`): vectors into its embeddings, and/or a
key/value prefix (workers/deep_prompt.py), after which its positions start; the batch carries the prefixes
for the attention layers.

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

import promptbank_kinds as kinds
from bank.codec import read_prompt
from promptbank_api.errors import InvalidArgument
from promptbank_kinds import Row
from workers.backbone import ENCODER, MASKED_LM, FrozenBackbone
from workers.deep_prompt import Prefixes

RowPrompt = torch.Tensor | Row  # a prompt of its kind, or a bare (n, H) tensor: an UNMARKED (input) prompt


def prompt_length(prompt: RowPrompt) -> int:
    """Positions a row's prompt adds, any kind."""
    r = kinds.row(prompt)
    return kinds.get(r.kind).positions(r.tensor)


@dataclass
class PromptedBatch:
    inputs_embeds: torch.Tensor  # (B, T, H)
    attention_mask: torch.Tensor  # (B, T) 1 on prompt + text, 0 on padding
    position_ids: torch.Tensor  # (B, T) 0..L_i-1 over each row's real positions
    text_mask: torch.Tensor  # (B, T) 1 on the row's own tokens only (not prompt, not padding)
    prompt_mask: torch.Tensor  # (B, T) 1 on the row's prompt positions only
    last_index: torch.Tensor  # (B,) index of each row's last real position
    mask_index: torch.Tensor  # (B,) index of the [MASK] token (masked LMs), else = last_index
    prefixes: Prefixes | None = None  # the rows' deep prompts, None when no row has one


def bare(backbone: FrozenBackbone) -> torch.Tensor:
    """A row with no prompt: an empty input prompt (the backbone alone)."""
    empty: torch.Tensor = backbone.embed.weight.new_zeros(0, backbone.hidden_size)
    return empty


def load_prompt(backbone: FrozenBackbone, data: bytes) -> Row:
    """A stored prompt's bytes as `build_batch` takes them (its kind honoured), on the backbone's device and
    dtype, its width checked against the backbone."""
    t, kind = read_prompt(data)
    misfit = kinds.misfit(kind, int(t.shape[1]), backbone.geometry, backbone.info.model)
    if misfit:
        raise InvalidArgument(misfit)
    return Row(t.to(backbone.embed.weight.device, backbone.embed.weight.dtype), kind)


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
    row_prompts: list[RowPrompt],
    noise: list[torch.Tensor | None] | None = None,
    pad_left: bool = False,
) -> PromptedBatch:
    """Assemble one batch; `row_prompts[i]` is row i's prompt, a `Row` of any kind or a bare `(n_i, H)` input
    prompt (either may require grad). `noise[i]`, when given, is added to row i's own token embeddings, `(len(token_ids[i]), H)`
    (training's input noise). Rows are right-padded, or left-padded with `pad_left` (batched decoding's side);
    either way a row's outputs do not depend on its batch."""
    if len(token_ids) != len(row_prompts) or (noise is not None and len(noise) != len(row_prompts)):
        raise ValueError(f"{len(token_ids)} rows but {len(row_prompts)} prompts / {len(noise or row_prompts)} noise rows")
    applied = [kinds.get(r.kind).apply(r.tensor) for r in map(kinds.row, row_prompts)]
    kv = [a.prefix for a in applied]
    empty = backbone.embed.weight.new_zeros(0, backbone.hidden_size)
    prompts = [empty if (e := a.embeds) is None else e for a in applied]
    offsets = [0 if d is None else int(d.shape[0]) for d in kv]  # a prefixed row's positions start after it
    prefixes = None
    if any(d is not None for d in kv):
        if backbone.deep is None:
            raise InvalidArgument(f"backbone {backbone.info.model!r} cannot carry key/value prefixes (its attention "
                                  f"is {backbone.model.config._attn_implementation!r}); use a prompt of another kind")
        prefixes = Prefixes.of(backbone.deep, kv)
    tok_ = backbone.tokenizer
    special = set(tok_.all_special_ids) if backbone.architecture in (ENCODER, MASKED_LM) else set()
    mask_id = tok_.mask_token_id if backbone.architecture == MASKED_LM else None
    device = backbone.embed.weight.device
    n_tok = [len(ids) for ids in token_ids]
    lengths = [n + int(p.shape[0]) for n, p in zip(n_tok, prompts, strict=True)]
    T = max(lengths)
    span = max(n + o for n, o in zip(lengths, offsets, strict=True))
    if span > backbone.max_positions:
        raise InvalidArgument(f"prompt + text is {span} positions; the backbone allows {backbone.max_positions} "
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
        row_noise = None if noise is None else noise[i]
        own = tok[i, :n] if row_noise is None else tok[i, :n] + row_noise.to(tok)
        seq = torch.cat([own[:off], prompt.to(tok.dtype), own[off:]])  # (L, H)
        text = torch.cat([torch.ones(off), torch.zeros(p), torch.ones(n - off)])  # (L,)
        pad = T - L  # the prompt sits next to the real tokens, never behind pads
        side = (pad, 0) if pad_left else (0, pad)
        start = pad if pad_left else 0  # where the row's real positions begin
        rows.append(F.pad(seq, (0, 0, *side)))  # (T, H)
        masks.append(F.pad(torch.ones(L), side))
        texts.append(F.pad(text, side))
        positions.append(F.pad(torch.arange(L) + offsets[i], side))
        last.append(start + L - 1)
        if mask_id is not None and mask_id in row:
            j = len(row) - 1 - row[::-1].index(mask_id)
            masked.append(start + (j if j < off else j + p))
        else:
            masked.append(start + L - 1)
    return PromptedBatch(
        inputs_embeds=torch.stack(rows),
        attention_mask=torch.stack(masks).to(device=device, dtype=torch.long),
        position_ids=torch.stack(positions).to(device),
        text_mask=torch.stack(texts).to(device),
        prompt_mask=(torch.stack(masks) - torch.stack(texts)).to(device),
        last_index=torch.tensor(last, device=device),
        mask_index=torch.tensor(masked, device=device),
        prefixes=prefixes,
    )
