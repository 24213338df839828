"""Load one frozen transformer (hub id or local path), identify its architecture and fingerprint it."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from promptbank_api.errors import FailedPrecondition
from promptbank_kinds import Geometry
from workers import deep_prompt
from workers.devices import Placement, plan
from workers.weights import data_start, local_dir, read_header, safetensors_files

ENCODER, CAUSAL_LM, SEQ2SEQ, MASKED_LM = "encoder", "causal_lm", "seq2seq", "masked_lm"
ROWS = 256  # embedding rows hashed at a time (the fingerprint): small reads that the allocator gives back
_LOADERS = {
    ENCODER: AutoModel,
    CAUSAL_LM: AutoModelForCausalLM,
    SEQ2SEQ: AutoModelForSeq2SeqLM,
    MASKED_LM: AutoModelForMaskedLM,
}


def detect_architecture(config: object) -> str:
    """Decide how prompts are scored: encoders (no LM head) by label-text similarity, LMs by label words."""
    if getattr(config, "is_encoder_decoder", False):
        return SEQ2SEQ
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in archs or "LMHeadModel" in archs or getattr(config, "is_decoder", False):
        return CAUSAL_LM
    if "MaskedLM" in archs:
        return MASKED_LM
    return ENCODER


@dataclass(frozen=True)
class BackboneInfo:
    """What the coordinator records about a loaded backbone."""

    model: str
    revision: str
    architecture: str
    hidden_size: int
    fingerprint: str
    max_positions: int


class FrozenBackbone:
    """A frozen model and its tokenizer. Nothing here has `requires_grad`; prompts are passed in per call.

    The weights are read from the memory-mapped safetensors straight into the serving dtype and onto the
    replica's devices (`placement`, workers/devices.py): no full fp32 copy on the host, and a backbone larger
    than one GPU spreads over the GPUs the replica was given."""

    def __init__(self, model: str, revision: str = "", architecture: str = "",
                 dtype: str = "auto", placement: Placement | None = None):
        rev = revision or "main"  # (transformers' default)
        # trust_remote_code=False: never run a model repo's own code
        config = AutoConfig.from_pretrained(model, revision=rev, trust_remote_code=False)
        self.placement = placement or plan(dtype, model, revision)
        self.architecture = architecture or detect_architecture(config)
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            model, revision=rev, trust_remote_code=False)
        kw: dict[str, Any] = {}
        if self.placement.device_map is not None:
            kw["device_map"] = self.placement.device_map
        if self.placement.max_memory:
            kw["max_memory"] = self.placement.max_memory
        self.model: PreTrainedModel = _LOADERS[self.architecture].from_pretrained(
            model, dtype=self.placement.torch_dtype, revision=rev, trust_remote_code=False, **kw)
        spilled = sorted({str(d) for d in (getattr(self.model, "hf_device_map", None) or {}).values()
                          if str(d) in ("cpu", "disk")})
        if spilled and self.placement.device.type != "cpu":
            raise FailedPrecondition(f"backbone {model!r} does not fit its {len(self.placement.devices)} GPU(s) in "
                                     f"{self.placement.dtype}: parts would go to {spilled}; give it more GPUs")
        self.model.eval()  # never train(): dropout off, so a row's result does not depend on its batch
        self.model.requires_grad_(False)
        if self.tokenizer.pad_token_id is None:  # GPT-style tokenizers ship without a pad token
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.deep = deep_prompt.install(self.model)  # where deep prompts go; None: this model takes none
        self.embed = self.model.get_input_embeddings()
        lm_body = self.model.base_model if self.architecture in (CAUSAL_LM, MASKED_LM) else self.model
        self.accepts_position_ids = "position_ids" in inspect.signature(lm_body.forward).parameters
        self.decoder_start_id = int(
            getattr(config, "decoder_start_token_id", None) or getattr(config, "pad_token_id", None) or 0
        )
        self.hidden_size = int(self.embed.weight.shape[1])
        self.max_positions = int(
            getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0) or 512
        )
        self.info = BackboneInfo(
            model=str(model),
            revision=revision,
            architecture=self.architecture,
            hidden_size=self.hidden_size,
            fingerprint=self._fingerprint(config, model, revision),
            max_positions=self.max_positions,
        )

    @property
    def device(self) -> torch.device:
        """The input device: where the embeddings are, and where prompts, ids and results are."""
        weight: torch.Tensor = self.embed.weight
        return weight.device

    @property
    def dtype(self) -> str:
        """The serving dtype's name: "bf16", "fp16" or "fp32"."""
        return self.placement.dtype

    @property
    def geometry(self) -> Geometry:
        """What a prompt kind fits against (promptbank_kinds): the hidden size and where prefixes go."""
        return Geometry.of(self.hidden_size, self.deep.shape if self.deep else (0, 0, 0))

    def _fingerprint(self, config: PreTrainedConfig, model: str, revision: str) -> str:
        """sha256 of the config and the input-embedding weights as fp32: the identity a prompt version pins. It
        does not depend on the serving dtype: a half-precision replica hashes the checkpoint's own embedding
        tensor (read alone from the safetensors), which a fp32 replica holds exactly."""
        h = hashlib.sha256()
        cfg = config.to_dict()
        for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash"):
            cfg.pop(volatile, None)
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
        weight = self.embed.weight.detach()
        chunks = (weight.split(ROWS) if weight.dtype == torch.float32
                  else stored_embedding(self.model, self.embed, model, revision))
        for rows in chunks:  # the same digest as the whole tensor's bytes, never a copy of all of them
            h.update(rows.to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    def parameter_digest(self) -> str:
        """sha256 over every parameter; tests use it to prove training left the backbone bit-identical."""
        h = hashlib.sha256()
        for name, p in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()


SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def stored_embedding(model: PreTrainedModel, embed: torch.nn.Module, path: str, revision: str
                     ) -> Iterator[torch.Tensor]:
    """The checkpoint's input-embedding tensor as stored, `ROWS` rows at a time, read with plain reads at its
    offset in the safetensors file (a second memory map would count its pages in the replica's memory again)."""
    name = next(n for n, m in model.named_modules() if m is embed) + ".weight"  # e.g. transformer.wte.weight
    weight: torch.Tensor = embed.weight  # type: ignore[assignment]  # (a Module's attribute is typed loosely)
    shape = list(weight.shape)
    folder = local_dir(path, revision)
    found: list[tuple[Path, dict[str, object]]] = []  # the embeddings by name, else their tied twin by shape
    same: list[tuple[Path, dict[str, object]]] = []
    for f in safetensors_files(folder) if folder is not None else []:
        for key, meta in read_header(f).items():
            if meta.get("shape") != shape or meta.get("dtype") not in SAFETENSORS_DTYPES:
                continue
            if key == name or key.endswith("." + name) or name.endswith("." + key):
                found.append((f, meta))
            elif "lm_head" not in key:
                same.append((f, meta))
    hit = found[:1] or (same if len(same) == 1 else [])  # a twin: e.g. a seq2seq's encoder.embed_tokens for shared
    if not hit:
        raise FailedPrecondition(f"backbone {path!r}: its input embeddings ({name}) are not in a safetensors file on "
                                 "this machine, so a half-precision replica cannot fingerprint it; serve it in fp32")
    f, meta = hit[0]
    dtype = SAFETENSORS_DTYPES[str(meta["dtype"])]
    row_bytes = shape[1] * torch.empty(0, dtype=dtype).element_size()
    offsets = meta["data_offsets"]
    assert isinstance(offsets, list)
    with open(f, "rb") as fh:
        fh.seek(data_start(f) + int(offsets[0]))
        for i in range(0, shape[0], ROWS):
            n = min(ROWS, shape[0] - i)
            data = bytearray(fh.read(n * row_bytes))
            yield torch.frombuffer(data, dtype=dtype).view(n, shape[1])
