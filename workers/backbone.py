"""Load one frozen transformer (hub id or local path), identify its architecture and fingerprint it."""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass

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

from promptbank_kinds import Geometry
from workers import deep_prompt

ENCODER, CAUSAL_LM, SEQ2SEQ, MASKED_LM = "encoder", "causal_lm", "seq2seq", "masked_lm"
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
    """A frozen model and its tokenizer. Nothing here has `requires_grad`; prompts are passed in per call."""

    def __init__(self, model: str, revision: str = "", architecture: str = "", dtype: torch.dtype = torch.float32):
        rev = revision or "main"  # (transformers' default)
        # trust_remote_code=False: never run a model repo's own code
        config = AutoConfig.from_pretrained(model, revision=rev, trust_remote_code=False)
        self.architecture = architecture or detect_architecture(config)
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            model, revision=rev, trust_remote_code=False)
        self.model: PreTrainedModel = _LOADERS[self.architecture].from_pretrained(
            model, dtype=dtype, revision=rev, trust_remote_code=False)
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
            fingerprint=self._fingerprint(config),
            max_positions=self.max_positions,
        )

    @property
    def geometry(self) -> Geometry:
        """What a prompt kind fits against (promptbank_kinds): the hidden size and where prefixes go."""
        return Geometry.of(self.hidden_size, self.deep.shape if self.deep else (0, 0, 0))

    def _fingerprint(self, config: PreTrainedConfig) -> str:
        """sha256 of the config and input-embedding weights: the identity a prompt version pins."""
        h = hashlib.sha256()
        cfg = config.to_dict()
        for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash"):
            cfg.pop(volatile, None)
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
        h.update(self.embed.weight.detach().to(torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    def parameter_digest(self) -> str:
        """sha256 over every parameter; tests use it to prove training left the backbone bit-identical."""
        h = hashlib.sha256()
        for name, p in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()
