"""Soft prompts <-> safetensors bytes. The only loader of tensor data from input; never pickle."""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from bank.errors import InvalidArgument

PROMPT_KEY = "prompt_embeddings"  # PEFT's key for prompt-tuning adapters


def encode_prompt(prompt: torch.Tensor, metadata: dict[str, str] | None = None) -> bytes:
    """Serialise a `[n_virtual, hidden]` prompt to safetensors bytes."""
    if prompt.dim() != 2:
        raise InvalidArgument(f"a soft prompt must be 2-D [num_virtual_tokens, hidden], got shape {list(prompt.shape)}")
    tensor = prompt.detach().to("cpu").contiguous()
    return st_save({PROMPT_KEY: tensor}, metadata={k: str(v) for k, v in (metadata or {}).items()})


def decode_prompt(data: bytes) -> torch.Tensor:
    """Parse safetensors bytes back to the `[n_virtual, hidden]` prompt tensor."""
    if data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or data[:2] == b"PK":
        raise InvalidArgument("pickle/torch.save data is refused; only safetensors prompts are accepted")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"not a valid safetensors file: {exc}") from None
    if PROMPT_KEY not in tensors:
        raise InvalidArgument(f"safetensors file has no '{PROMPT_KEY}' tensor (found {sorted(tensors)})")
    prompt = tensors[PROMPT_KEY]
    if prompt.dim() != 2:
        raise InvalidArgument(f"'{PROMPT_KEY}' must be 2-D, got shape {list(prompt.shape)}")
    return prompt


def sha256_hex(data: bytes) -> str:
    """Content hash of serialised prompt bytes; the cache key of a prompt everywhere."""
    return hashlib.sha256(data).hexdigest()
