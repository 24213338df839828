"""Deep prompts (prefix tuning, P-tuning v2, PEFT's PREFIX_TUNING): `(P, layers * 2 * kv_heads * head_dim)`
keys and values for every self-attention layer, in PEFT's layout (per position, each layer's keys then values).

In a mixed batch a row's deep prompt is its own key/value prefix in every layer and its text's positions start
after it; it puts nothing into the input embeddings. The prefix joins every forward (prefill and each decode
step) and is never cached. The attention wrapper that reads the prefixes needs the model's code, so it lives
in workers/deep_prompt.py; this module holds what needs only tensors. A deep prompt may train through a
prefix projection (promptbank_kinds/projection.py), folded away when it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from promptbank_domain import kinds as described
from promptbank_kinds.base import (
    Applied,
    BackboneView,
    ConfigInt,
    Geometry,
    PeftDims,
    PositionRows,
    Reparam,
    Row,
    positive_int,
)
from promptbank_kinds.projection import PrefixProjection

NAME = described.DEEP.name
SEQ2SEQ_PREFIX = ("PEFT gives a seq2seq model's prefix to the decoder layers only, while a promptbank deep prompt "
                  "on a seq2seq backbone also holds the encoder layers")


@dataclass(frozen=True)
class DeepPrompt(Row):
    """A row's deep prompt, `(P, width)`: `DeepPrompt(tensor)`."""

    kind: str = NAME


class DeepKind(PositionRows):
    # what it is called and its training defaults: its plain description (promptbank_domain.kinds.DEEP)
    name = NAME
    proto_enum = described.DEEP.proto_enum
    label = described.DEEP.label
    width_name = described.DEEP.width_name
    help = described.DEEP.help
    train_defaults: Mapping[str, Any] = described.DEEP.train_defaults
    projects = described.DEEP.projects
    peft_type = "PREFIX_TUNING"

    def width(self, geo: Geometry) -> int:
        return geo.layers * 2 * geo.kv_heads * geo.head_dim

    def apply(self, tensor: torch.Tensor) -> Applied:
        return Applied(embeds=None, prefix=tensor)

    def init_rows(self, view: BackboneView, ids: list[int]) -> torch.Tensor:
        """Where real words put each layer's keys and values (prefix tuning's init from real activations), not
        noise the layers never saw."""
        return view.key_values(ids)

    def init_scale(self, view: BackboneView, ids: list[int]) -> torch.Tensor:
        return view.key_values(ids).std()  # the spread of what the layers see

    def trainable(self, start: torch.Tensor, in_dim: int, hidden: int, seed: int) -> Reparam | None:
        return PrefixProjection(start, in_dim, hidden, seed) if hidden else None

    def peft_refusal(self, task_type: str) -> str:
        return SEQ2SEQ_PREFIX if task_type == "SEQ_2_SEQ_LM" else ""

    def peft_dims(self, token_dim: int, num_layers: int, num_attention_heads: int) -> PeftDims:
        layers = positive_int("num_layers", num_layers)
        return PeftDims(token_dim, layers, positive_int("num_attention_heads", num_attention_heads))

    def peft_dims_of(self, width: int, geo: Geometry) -> PeftDims:
        """PEFT's token_dim of a prefix is the key/value width, not the hidden size."""
        return PeftDims(geo.kv_heads * geo.head_dim, geo.layers, geo.kv_heads)

    def peft_read(self, config: ConfigInt, columns: int) -> PeftDims:
        """PEFT fills these from the base model when it trains; the saved config has them."""
        layers, heads, dim = (int(config(k, True) or 0) for k in ("num_layers", "num_attention_heads", "token_dim"))
        return PeftDims(dim, layers, heads)

    def peft_shape(self, n: int, submodules: int, dims: PeftDims) -> tuple[list[int], str]:
        says = f"num_virtual_tokens={n} rows of num_layers={dims.num_layers} x 2 x token_dim={dims.token_dim}"
        return [n, dims.num_layers * 2 * dims.token_dim], says

    def peft_config(self, dims: PeftDims) -> dict[str, Any]:
        """What PrefixTuningConfig.save_pretrained writes beyond the shared keys; stored already projected."""
        return {
            "encoder_hidden_size": None,
            "init_weights": None,
            "num_attention_heads": dims.num_attention_heads,
            "num_layers": dims.num_layers,
            "prefix_projection": False,
        }


KIND = DeepKind()
