"""promptbank prompt versions <-> PEFT prompt-tuning and prefix-tuning adapters. Pure functions over bytes; no
DB, no pickle.

An exported adapter is exactly what `PeftModel.save_pretrained` writes for `PromptTuningConfig` (input
prompts) or `PrefixTuningConfig` (deep prompts), checked against peft 0.21 in tests/test_peft_format.py:
`adapter_config.json` (same keys, `indent=2, sort_keys=True`) and `adapter_model.safetensors` holding the
prompt under `prompt_embeddings`, `[num_virtual_tokens, token_dim]` for prompt tuning and `[num_virtual_tokens,
num_layers * 2 * token_dim]` for prefix tuning (PEFT's layout is promptbank's: per position, every layer's
keys then values; `token_dim` is the key/value width, `num_attention_heads` the key/value heads). It loads
with `PeftModel.from_pretrained(base, dir)`. promptbank-only metadata (task
spec, architecture, `extra`) rides in the safetensors header under `promptbank.*` keys, which PEFT never
reads; unknown keys in adapter_config.json would make `PeftConfig.from_pretrained` warn, so none are added.

Where each side puts the prompt (what an adapter means after crossing over):
- causal LM (`CAUSAL_LM`): both prepend it to every row and count positions from 0 over prompt + text, so
  the logits are identical (with right padding; PEFT prepends the prompt in front of left padding, PEFT bug
  1093, where promptbank keeps it next to the text).
- seq2seq (`SEQ_2_SEQ_LM`): current PEFT prepends prompt-tuning vectors to the encoder input only. Its own
  default `num_transformer_submodules=2` stores a second, decoder half of `num_virtual_tokens` rows that it
  no longer uses (older PEFT releases prepended it to the decoder input). Export therefore writes
  `num_transformer_submodules=1` with just the encoder prompt, which every PEFT version reads the same way;
  import of a two-submodule adapter keeps the first (encoder) half, the part current PEFT applies.
- encoder / masked LM: PEFT has no masked-LM task type, and an adapter without a task type is loaded as a
  bare `PeftModel` whose forward ignores the prompt. `FEATURE_EXTRACTION` is the type whose forward
  prepends it, so both export to that. PEFT prepends the prompt before `[CLS]`; promptbank inserts it right
  after `[CLS]`, so an encoder prompt is portable as a tensor but scores differ across the two (retrain or
  accept the shift). PEFT also drops `token_type_ids` and `position_ids` for prompt tuning.

Prefix tuning (deep prompts): encoders, masked LMs (`FEATURE_EXTRACTION`) and causal LMs (`CAUSAL_LM`) put
the prefix where promptbank does (every self-attention layer, text positions counted after the prefix), so
PEFT's outputs equal promptbank's. PEFT gives a seq2seq model's prefix to its decoder layers only, while a
promptbank deep prompt on a seq2seq backbone holds its encoder layers too: such adapters are refused both
ways rather than silently changed. An adapter trained with `prefix_projection` is stored by PEFT already
projected (the reparameterisation folded away), so it imports like any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from bank.codec import (
    PROMPT_KEY,
    decode_prompt,
    encode_prompt,
    metadata,
    read_prompt,
    read_safetensors,
)
from promptbank_api.errors import InvalidArgument, ResourceExhausted
from promptbank_api.files import PEFT_CONFIG as CONFIG_NAME
from promptbank_api.files import PEFT_WEIGHTS as WEIGHTS_NAME
from promptbank_domain.kinds import DEEP, INPUT

PEFT_VERSION = "0.21.2"  # the peft release whose save_pretrained output the export mirrors (see the tests)
MAX_ADAPTER_BYTES = 64 << 20  # a prompt is KBs to a few MB; refuse anything far beyond that
_META = "promptbank."  # prefix of promptbank's keys in the safetensors header

# promptbank architecture -> PEFT task type (architecture names as in workers.backbone)
TASK_TYPES = {
    "causal_lm": "CAUSAL_LM",
    "seq2seq": "SEQ_2_SEQ_LM",
    "encoder": "FEATURE_EXTRACTION",
    "masked_lm": "FEATURE_EXTRACTION",  # PEFT has no masked-LM type; see the module docstring
}
_ARCH_OF_TASK_TYPE = {"CAUSAL_LM": "causal_lm", "SEQ_2_SEQ_LM": "seq2seq", "FEATURE_EXTRACTION": "encoder"}
PEFT_TYPES = {INPUT: "PROMPT_TUNING", DEEP: "PREFIX_TUNING"}
_KIND_OF_PEFT_TYPE = {v: k for k, v in PEFT_TYPES.items()}
SEQ2SEQ_PREFIX = ("PEFT gives a seq2seq model's prefix to the decoder layers only, while a promptbank deep prompt "
                  "on a seq2seq backbone also holds the encoder layers")


@dataclass(frozen=True, eq=False)
class ImportedPrompt:
    """A PEFT prompt-tuning or prefix-tuning adapter read back as a promptbank prompt."""

    tensor: torch.Tensor  # (num_virtual_tokens, token_dim) or, deep, (.., num_layers * 2 * token_dim)
    num_virtual_tokens: int
    token_dim: int  # the hidden size (input) or the key/value width (deep)
    base_model: str  # base_model_name_or_path; "" when the adapter names none
    revision: str  # base model revision; "" when none
    task_type: str  # PEFT task type ("CAUSAL_LM", ...); "" when none
    architecture: str  # promptbank architecture it maps to; "" when the task type says nothing usable
    peft_version: str  # peft release that wrote the config; "" when not recorded (peft < 0.18)
    num_transformer_submodules: int  # as in the file; 2 means the unused decoder half was dropped
    task: dict[str, Any] | None  # promptbank task spec, when promptbank exported the adapter
    extra: dict[str, Any] | None  # promptbank's extra metadata, when promptbank exported the adapter
    kind: str = INPUT  # INPUT (PROMPT_TUNING) or DEEP (PREFIX_TUNING)
    num_layers: int = 0  # deep: self-attention layers
    num_attention_heads: int = 0  # deep: key/value heads


def export_peft(
    tensor_bytes: bytes,
    *,
    base_model: str,
    revision: str,
    architecture: str,
    num_virtual_tokens: int,
    token_dim: int,
    task: dict[str, Any],
    extra: dict[str, Any] | None,
    num_layers: int = 0,
    num_attention_heads: int = 0,
) -> tuple[bytes, bytes]:
    """A stored prompt version (safetensors bytes) -> (adapter_config.json, adapter_model.safetensors) bytes.
    A deep prompt (its kind is in its bytes) needs its backbone's `num_layers` and key/value
    `num_attention_heads`, and `token_dim` is then the key/value width."""
    if architecture not in TASK_TYPES:
        raise InvalidArgument(f"architecture {architecture!r} cannot be exported to PEFT; use one of {sorted(TASK_TYPES)}")
    n = _positive_int("num_virtual_tokens", num_virtual_tokens)
    dim = _positive_int("token_dim", token_dim)
    prompt, kind = read_prompt(_check_size("prompt", tensor_bytes))  # refuses pickle and non-safetensors data
    layers = _positive_int("num_layers", num_layers) if kind == DEEP else 1
    if kind == DEEP and architecture == "seq2seq":
        raise InvalidArgument(f"a deep prompt on a seq2seq backbone cannot be exported: {SEQ2SEQ_PREFIX}")
    width = layers * 2 * dim if kind == DEEP else dim
    if list(prompt.shape) != [n, width]:
        raise InvalidArgument(
            f"the prompt tensor has shape {list(prompt.shape)} but the version says "
            f"num_virtual_tokens={n}, token_dim={dim}" + (f", num_layers={layers}" if kind == DEEP else "")
        )
    if not prompt.is_floating_point():
        raise InvalidArgument(f"a soft prompt must be floating point, got {prompt.dtype}")
    if not isinstance(task, dict) or (extra is not None and not isinstance(extra, dict)):
        raise InvalidArgument("task must be a dict and extra a dict or None")
    metadata = {"format": "pt", _META + "architecture": architecture, _META + "task": _to_json("task", task)}
    if extra is not None:
        metadata[_META + "extra"] = _to_json("extra", extra)
    if kind == DEEP:
        config = _prefix_config(n, dim, layers, _positive_int("num_attention_heads", num_attention_heads),
                                base_model, revision, TASK_TYPES[architecture])
        return json.dumps(config, indent=2, sort_keys=True).encode(), encode_prompt(prompt, metadata, kind=DEEP)
    config = {  # every key PromptTuningConfig.save_pretrained writes, nothing else
        "auto_mapping": None,
        "base_model_name_or_path": base_model or None,
        "inference_mode": True,
        "modules_to_save": None,
        "num_attention_heads": None,  # PEFT fills these from the base model's config; prompt tuning ignores them
        "num_layers": None,
        "num_transformer_submodules": 1,  # also for seq2seq: the prompt is the encoder's; see the module docstring
        "num_virtual_tokens": n,
        "peft_type": "PROMPT_TUNING",
        "peft_version": PEFT_VERSION,
        "prompt_tuning_init": "RANDOM",  # init is moot for a trained prompt; RANDOM needs no tokenizer on load
        "prompt_tuning_init_text": None,
        "revision": revision or None,
        "task_type": TASK_TYPES[architecture],
        "token_dim": dim,
        "tokenizer_kwargs": None,
        "tokenizer_name_or_path": None,
    }
    config_bytes = json.dumps(config, indent=2, sort_keys=True).encode()
    return config_bytes, encode_prompt(prompt, metadata)


def _prefix_config(n: int, dim: int, layers: int, heads: int, base_model: str, revision: str, task_type: str
                   ) -> dict[str, Any]:
    """Every key PrefixTuningConfig.save_pretrained writes, nothing else; stored already projected."""
    return {
        "auto_mapping": None,
        "base_model_name_or_path": base_model or None,
        "encoder_hidden_size": None,
        "inference_mode": True,
        "init_weights": None,
        "modules_to_save": None,
        "num_attention_heads": heads,
        "num_layers": layers,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": n,
        "peft_type": "PREFIX_TUNING",
        "peft_version": PEFT_VERSION,
        "prefix_projection": False,
        "revision": revision or None,
        "task_type": task_type,
        "token_dim": dim,
    }


def import_peft(adapter_config: bytes, adapter_model: bytes) -> ImportedPrompt:
    """(adapter_config.json, adapter_model.safetensors) bytes of a PROMPT_TUNING or PREFIX_TUNING adapter ->
    ImportedPrompt."""
    adapter_config = _check_size(CONFIG_NAME, adapter_config)
    adapter_model = _check_size(WEIGHTS_NAME, adapter_model)
    cfg = _parse_config(adapter_config)
    peft_type = cfg.get("peft_type")
    if peft_type not in _KIND_OF_PEFT_TYPE:
        raise InvalidArgument(
            f"PEFT adapter type {peft_type!r} is not supported: only PROMPT_TUNING (soft prompts) and "
            "PREFIX_TUNING (deep prompts) adapters can be imported"
        )
    kind = _KIND_OF_PEFT_TYPE[peft_type]
    task_type = cfg.get("task_type") or ""
    if not isinstance(task_type, str):
        raise InvalidArgument(f"{CONFIG_NAME}: task_type must be a string, got {task_type!r}")
    if kind == DEEP and task_type == "SEQ_2_SEQ_LM":
        raise InvalidArgument(f"a SEQ_2_SEQ_LM prefix-tuning adapter cannot be imported: {SEQ2SEQ_PREFIX}")
    n = _config_int(cfg, "num_virtual_tokens", required=True)
    subm = _config_int(cfg, "num_transformer_submodules") or (2 if task_type == "SEQ_2_SEQ_LM" else 1)
    if subm not in (1, 2) or (subm == 2 and (task_type != "SEQ_2_SEQ_LM" or kind == DEEP)):
        raise InvalidArgument(
            f"{CONFIG_NAME}: num_transformer_submodules={subm} with task_type {task_type or None!r}; PEFT prompt "
            "tuning uses 1, or 2 only for SEQ_2_SEQ_LM"
        )

    tensor = decode_prompt(adapter_model)  # refuses pickle (adapter_model.bin) and non-safetensors data
    _, header = read_safetensors(adapter_model, WEIGHTS_NAME)
    others = sorted(k for k in header if k not in ("__metadata__", PROMPT_KEY))
    if others:
        raise InvalidArgument(
            f"the adapter also carries trained modules {others[:5]}; a promptbank prompt is the whole "
            "adaptation, so only adapters holding just 'prompt_embeddings' can be imported"
        )
    layers = heads = 0
    if kind == DEEP:  # PEFT fills these from the base model when it trains; the saved config has them
        layers = _config_int(cfg, "num_layers", required=True)
        heads = _config_int(cfg, "num_attention_heads", required=True)
        dim = _config_int(cfg, "token_dim", required=True)
        want = [n, layers * 2 * dim]
        says = f"num_virtual_tokens={n} rows of num_layers={layers} x 2 x token_dim={dim}"
    else:
        dim = _config_int(cfg, "token_dim") or int(tensor.shape[1])
        want = [n * subm, dim]
        says = f"num_virtual_tokens={n} x num_transformer_submodules={subm} rows of token_dim={dim}"
    if list(tensor.shape) != want:
        raise InvalidArgument(
            f"{WEIGHTS_NAME} holds '{PROMPT_KEY}' of shape {list(tensor.shape)}, but {CONFIG_NAME} says "
            f"{says}, i.e. shape {want}"
        )
    if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
        raise InvalidArgument(f"'{PROMPT_KEY}' must hold finite floating-point values (dtype {tensor.dtype})")
    tensor = tensor[:n].clone()  # (n, dim); with 2 submodules rows n..2n are the decoder half PEFT ignores

    meta = metadata(header)
    arch = meta.get(_META + "architecture", "")
    if TASK_TYPES.get(arch) != task_type:  # no promptbank metadata, or the config was edited since
        arch = _ARCH_OF_TASK_TYPE.get(task_type, "")
    return ImportedPrompt(
        tensor=tensor,
        num_virtual_tokens=n,
        token_dim=dim,
        base_model=_config_str(cfg, "base_model_name_or_path"),
        revision=_config_str(cfg, "revision"),
        task_type=task_type,
        architecture=arch,
        peft_version=_config_str(cfg, "peft_version"),
        num_transformer_submodules=subm,
        task=_meta_dict(meta, "task"),
        extra=_meta_dict(meta, "extra"),
        kind=kind,
        num_layers=layers,
        num_attention_heads=heads,
    )


def _parse_config(data: bytes) -> dict[str, Any]:
    try:
        cfg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"{CONFIG_NAME} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise InvalidArgument(f"{CONFIG_NAME} must hold a JSON object, got {type(cfg).__name__}")
    return cfg


def _config_int(cfg: dict[str, Any], key: str, required: bool = False) -> int | None:
    value = cfg.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{CONFIG_NAME}: {key} must be a positive integer, got {value!r}")
    return value


def _config_str(cfg: dict[str, Any], key: str) -> str:
    value = cfg.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{CONFIG_NAME}: {key} must be a string or null, got {value!r}")
    return value or ""


def _meta_dict(meta: dict[str, str], key: str) -> dict[str, Any] | None:
    raw = meta.get(_META + key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidArgument(f"safetensors metadata '{_META + key}' is not a JSON object")
    return value


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return value


def _to_json(name: str, value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name} is not JSON-serialisable: {exc}") from None


def _check_size(name: str, data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgument(f"{name} must be bytes, got {type(data).__name__}")
    if len(data) > MAX_ADAPTER_BYTES:
        raise ResourceExhausted(f"{name} is {len(data)} bytes; the limit is {MAX_ADAPTER_BYTES}")
    return bytes(data)
