"""Safetensors bytes <-> tensors: the only loader of tensor data from input; never pickle.

Prompts, PEFT adapters and training checkpoints all cross process boundaries as safetensors bytes and are
parsed here, by one reader that refuses pickle and names what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from promptbank_api.errors import InvalidArgument
from promptbank_domain.kinds import INPUT, PROMPT_KINDS

PROMPT_KEY = "prompt_embeddings"  # PEFT's key for prompt-tuning (and prefix-tuning) adapters
# A prompt's kind (promptbank_domain.kinds) is written into the bytes' metadata, so a prompt's bytes (and the
# sha256 every cache keys on) say what they are; bytes without it are input prompts.
KIND_KEY = "promptbank.kind"
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK")  # pickle protocols 2-5, torch.save zip


def read_safetensors(data: bytes, what: str = "safetensors data") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, header) of safetensors bytes; the header holds each tensor's entry and `__metadata__`.
    Pickle and anything malformed are INVALID_ARGUMENT naming `what`."""
    if data[:2] in PICKLE_MAGIC:
        raise InvalidArgument(f"{what}: pickle/torch.save data is refused; only safetensors is accepted")
    try:
        tensors = st_load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid safetensors: {exc}") from None
    return tensors, header


def metadata(header: dict[str, Any]) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors header ({} when there are none)."""
    return header.get("__metadata__") or {}


def write_safetensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> bytes:
    """Serialise CPU-contiguous copies of `tensors` with string metadata."""
    return st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
                   metadata={k: str(v) for k, v in (meta or {}).items()})


def encode_prompt(prompt: torch.Tensor, meta: dict[str, str] | None = None, kind: str = INPUT) -> bytes:
    """Serialise a `[n_virtual, width]` prompt of `kind` to safetensors bytes."""
    if prompt.dim() != 2:
        raise InvalidArgument(f"a soft prompt must be 2-D [num_virtual_tokens, width], got shape {list(prompt.shape)}")
    if kind not in PROMPT_KINDS:
        raise InvalidArgument(f"prompt kind {kind!r} is not one of {list(PROMPT_KINDS)}")
    return write_safetensors({PROMPT_KEY: prompt}, {**(meta or {}), **({KIND_KEY: kind} if kind != INPUT else {})})


def read_prompt(data: bytes) -> tuple[torch.Tensor, str]:
    """Parse safetensors bytes back to the `[n_virtual, width]` prompt tensor and its kind."""
    tensors, header = read_safetensors(data, "prompt")
    if PROMPT_KEY not in tensors:
        raise InvalidArgument(f"safetensors file has no '{PROMPT_KEY}' tensor (found {sorted(tensors)})")
    prompt = tensors[PROMPT_KEY]
    if prompt.dim() != 2:
        raise InvalidArgument(f"'{PROMPT_KEY}' must be 2-D, got shape {list(prompt.shape)}")
    kind = metadata(header).get(KIND_KEY, INPUT)
    if kind not in PROMPT_KINDS:
        raise InvalidArgument(f"prompt kind {kind!r} is not one of {list(PROMPT_KINDS)}")
    return prompt, kind


def decode_prompt(data: bytes) -> torch.Tensor:
    """The prompt tensor of safetensors bytes (either kind)."""
    return read_prompt(data)[0]


def prompt_kind(data: bytes) -> str:
    """The kind written in a prompt's bytes (INPUT when none is)."""
    return read_prompt(data)[1]


def sha256_hex(data: bytes) -> str:
    """Content hash of serialised prompt bytes; the cache key of a prompt everywhere."""
    return hashlib.sha256(data).hexdigest()
