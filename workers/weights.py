"""What a checkpoint's weights weigh, read from its safetensors headers or its config without loading a tensor.

The coordinator asks before it places replicas (coordinator/capacity.py) and a GPU replica asks before it loads
(its own devices' free memory), so a backbone that cannot fit is refused at once with its numbers, not after a
placement timeout or an out-of-memory crash. Imports only the standard library: the coordinator reads it
without torch.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from promptbank_domain.precision import DTYPE_BYTES

# Headroom over the weights, stated once: activations and the allocator's slack take a fifth of the weights,
# the runtime (torch and transformers in a process, or a CUDA context) a fixed 512 MiB, and a causal LM's
# generation cache what --generate-max-cached-tokens reserves at most.
ACTIVATION_SHARE = 0.2
RUNTIME_BYTES = 512 << 20
HEADER_MAX = 100 << 20  # a safetensors header larger than this is not one


@dataclass(frozen=True)
class Footprint:
    """Bytes one replica needs in one dtype, and where the figure came from."""

    dtype: str
    weights: int  # parameters x bytes per element in `dtype`
    kv_cache: int  # the generation slab at its cap (0 for backbones that do not batch generations)
    source: str  # "safetensors headers" or "config"

    @property
    def headroom(self) -> int:
        return int(self.weights * ACTIVATION_SHARE) + RUNTIME_BYTES + self.kv_cache

    @property
    def total(self) -> int:
        return self.weights + self.headroom

    def describe(self) -> str:
        return (f"{gib(self.total)} in {self.dtype} (weights {gib(self.weights)} from its {self.source}, plus "
                f"{gib(self.headroom)} headroom: {ACTIVATION_SHARE:.0%} of the weights for activations, "
                f"{gib(RUNTIME_BYTES)} runtime, {gib(self.kv_cache)} generation cache)")


def gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def read_header(path: Path) -> dict[str, dict[str, object]]:
    """A safetensors file's header: tensor name -> {"dtype", "shape", "data_offsets"} (no tensor read)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > HEADER_MAX:
            raise ValueError(f"{path}: safetensors header of {n} bytes is implausible")
        header = json.loads(f.read(n))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header is not an object")
    header.pop("__metadata__", None)
    return header


def data_start(path: Path) -> int:
    """Where a safetensors file's tensor bytes begin (each tensor's `data_offsets` count from here)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    return 8 + int(n)


def safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint's shards (from its index when sharded), or [] when it has no safetensors."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        return [model_dir / s for s in shards if (model_dir / s).is_file()]
    return sorted(model_dir.glob("*.safetensors"))


def parameter_count(files: list[Path]) -> int:
    """Elements over every tensor the headers declare."""
    total = 0
    for f in files:
        for meta in read_header(f).values():
            shape = meta.get("shape") if isinstance(meta, dict) else None
            if isinstance(shape, list):
                total += math.prod(int(d) for d in shape)
    return total


def _config(model_dir: Path) -> dict[str, object]:
    path = model_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _int(cfg: dict[str, object], *names: str, default: int = 0) -> int:
    for n in names:
        v = cfg.get(n)
        if isinstance(v, int) and v > 0:
            return v
    return default


def config_parameters(cfg: dict[str, object]) -> int:
    """A transformer's parameters from its config alone: embeddings plus, per layer, attention (4 H^2) and MLP
    (2 H I). A floor when the checkpoint is not on this machine (a hub id not yet downloaded)."""
    h = _int(cfg, "hidden_size", "n_embd", "d_model")
    layers = _int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    layers += _int(cfg, "num_decoder_layers") if cfg.get("is_encoder_decoder") else 0
    inter = _int(cfg, "intermediate_size", "n_inner", "d_ff", default=4 * h)
    vocab = _int(cfg, "vocab_size")
    positions = _int(cfg, "max_position_embeddings", "n_positions")
    return vocab * h + positions * h + layers * (4 * h * h + 2 * h * inter)


def kv_cache_bytes(cfg: dict[str, object], cached_tokens: int, itemsize: int) -> int:
    """The generation slab at its cap: layers x keys and values x key/value width x positions (causal LMs)."""
    declared = cfg.get("architectures")
    archs = " ".join(str(a) for a in declared) if isinstance(declared, list) else ""
    if cfg.get("is_encoder_decoder") or not ("CausalLM" in archs or "LMHeadModel" in archs):
        return 0
    h = _int(cfg, "hidden_size", "n_embd")
    layers = _int(cfg, "num_hidden_layers", "n_layer")
    heads = _int(cfg, "num_attention_heads", "n_head", default=1)
    kv_heads = _int(cfg, "num_key_value_heads", default=heads)
    head_dim = _int(cfg, "head_dim", default=h // max(heads, 1))
    return layers * 2 * kv_heads * head_dim * cached_tokens * itemsize


def local_dir(model: str, revision: str = "") -> Path | None:
    """The checkpoint's folder on this machine: the path itself, or a hub id's snapshot in the local cache."""
    d = Path(model).expanduser()
    if d.is_dir():
        return d
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json", revision=revision or None)
    except Exception:  # noqa: BLE001 - not a hub id, or no cache: nothing known here
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def footprint(model: str, dtype: str, cached_tokens: int = 0, revision: str = "") -> Footprint | None:
    """What one replica of `model` needs in `dtype` ("bf16", "fp16", "fp32"); None when neither its safetensors
    nor its config is on this machine."""
    d = local_dir(model, revision)
    if d is None:
        return None
    itemsize = DTYPE_BYTES[dtype]
    cfg = _config(d)
    files = safetensors_files(d)
    if files:
        params, source = parameter_count(files), "safetensors headers"
    elif cfg:
        params, source = config_parameters(cfg), "config"
    else:
        return None
    return Footprint(dtype, params * itemsize, kv_cache_bytes(cfg, cached_tokens, itemsize), source)
