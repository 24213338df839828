"""Input prompts (prompt tuning, PEFT's PROMPT_TUNING): `(n, H)` vectors before the text's token embeddings.

In a mixed batch the vectors are spliced into the row's input embeddings (after [CLS] on encoders) and its
positions count from 0 over prompt and text, exactly as PEFT prompt tuning does on LMs. A prefill puts them
into the KV cache with the text, so decoding needs nothing more of them. They train directly (no projection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from promptbank_domain import kinds as described
from promptbank_kinds.base import Applied, BackboneView, ConfigInt, Geometry, PeftDims, PositionRows, Reparam

NAME = described.INPUT.name


class InputKind(PositionRows):
    # what it is called: its plain description (promptbank_domain.kinds.INPUT); TrainConfig's own defaults are
    # prompt tuning's
    name = NAME
    proto_enum = described.INPUT.proto_enum
    label = described.INPUT.label
    width_name = described.INPUT.width_name
    help = described.INPUT.help
    train_defaults: Mapping[str, Any] = described.INPUT.train_defaults
    projects = described.INPUT.projects
    peft_type = "PROMPT_TUNING"

    def width(self, geo: Geometry) -> int:
        return geo.hidden_size

    def apply(self, tensor: torch.Tensor) -> Applied:
        return Applied(embeds=tensor, prefix=None)

    def init_rows(self, view: BackboneView, ids: list[int]) -> torch.Tensor:
        return view.embeddings()[ids]

    def init_scale(self, view: BackboneView, ids: list[int]) -> torch.Tensor:
        return view.embeddings().std()  # the spread of the embeddings the layers see

    def trainable(self, start: torch.Tensor, in_dim: int, hidden: int, seed: int) -> Reparam | None:
        return None

    def peft_refusal(self, task_type: str) -> str:
        return ""  # every task type; seq2seq keeps the encoder half (bank/peft_format.py's docstring)

    def peft_dims(self, token_dim: int, num_layers: int, num_attention_heads: int) -> PeftDims:
        return PeftDims(token_dim)

    def peft_dims_of(self, width: int, geo: Geometry) -> PeftDims:
        return PeftDims(width)

    def peft_read(self, config: ConfigInt, columns: int) -> PeftDims:
        return PeftDims(config("token_dim", False) or columns)

    def peft_shape(self, n: int, submodules: int, dims: PeftDims) -> tuple[list[int], str]:
        says = f"num_virtual_tokens={n} x num_transformer_submodules={submodules} rows of token_dim={dims.token_dim}"
        return [n * submodules, dims.token_dim], says

    def peft_config(self, dims: PeftDims) -> dict[str, Any]:
        """What PromptTuningConfig.save_pretrained writes beyond the shared keys."""
        return {
            "num_attention_heads": None,  # PEFT fills these from the base model's config; prompt tuning ignores them
            "num_layers": None,
            "prompt_tuning_init": "RANDOM",  # init is moot for a trained prompt; RANDOM needs no tokenizer on load
            "prompt_tuning_init_text": None,
            "tokenizer_kwargs": None,
            "tokenizer_name_or_path": None,
        }


KIND = InputKind()
