"""Deep prompts <-> PEFT PREFIX_TUNING adapters, proven against the real `peft` library on tiny models: an
export loads in PEFT and scores what promptbank scores, a PEFT-made adapter (with or without its
reparameterisation) imports and serves PEFT's outputs, and what cannot cross (seq2seq) is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel, PrefixTuningConfig, get_peft_model  # a dev dependency: missing, these tests fail
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from bank.codec import encode_prompt, prompt_kind
from bank.peft_format import export_peft, import_peft
from promptbank.peft_files import read_adapter, write_adapter
from promptbank_api.errors import InvalidArgument
from promptbank_kinds import DEEP
from workers.backbone import FrozenBackbone
from workers.deep_prompt import DeepPrompt, prefixes
from workers.soft_prompt import build_batch, tokenize

TASK = {"labels": ["negative", "positive"], "label_words": ["bad", "good"], "kind": "classification"}
TEXTS = ["what a great day", "this is awful and i want my money back right now", "ok"]
LOADERS = {"encoder": AutoModel, "masked_lm": AutoModelForMaskedLM, "causal_lm": AutoModelForCausalLM}
PEFT_TASK = {"encoder": "FEATURE_EXTRACTION", "masked_lm": "FEATURE_EXTRACTION", "causal_lm": "CAUSAL_LM"}


def outputs(result: object) -> torch.Tensor:
    return result.logits if getattr(result, "logits", None) is not None else result.last_hidden_state  # type: ignore[attr-defined]


def ours(bb: FrozenBackbone, texts: list[str], prompt: torch.Tensor) -> list[torch.Tensor]:
    """Each row's outputs at its own tokens, all rows in one promptbank batch."""
    ids = tokenize(bb, texts, 64)
    batch = build_batch(bb, ids, [DeepPrompt(prompt)] * len(texts))
    with torch.no_grad(), prefixes(batch.prefixes):
        out = outputs(bb.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                               position_ids=batch.position_ids))
    return [out[i, : len(row)] for i, row in enumerate(ids)]


def theirs(model: PeftModel, bb: FrozenBackbone, texts: list[str]) -> list[torch.Tensor]:
    """Each row's outputs at its own tokens under PEFT, one right-padded batch (PEFT adds the prefix to the
    attention mask of every row and counts positions after it, as promptbank does)."""
    ids = tokenize(bb, texts, 64)  # the same token rows promptbank reads (a masked LM's [MASK] included)
    T = max(map(len, ids))
    x = torch.tensor([row + [bb.tokenizer.pad_token_id] * (T - len(row)) for row in ids])
    mask = torch.tensor([[1] * len(row) + [0] * (T - len(row)) for row in ids])
    with torch.no_grad():
        out = outputs(model(input_ids=x, attention_mask=mask))
    return [out[i, : len(row)] for i, row in enumerate(ids)]


def export(bb: FrozenBackbone, prompt: torch.Tensor, base: str) -> tuple[bytes, bytes]:
    layout = bb.deep
    assert layout is not None
    return export_peft(encode_prompt(prompt, kind=DEEP), base_model=base, revision="", architecture=bb.architecture,
                       num_virtual_tokens=prompt.shape[0], token_dim=layout.kv_heads * layout.head_dim, task=TASK,
                       extra=None, num_layers=layout.n_slots, num_attention_heads=layout.kv_heads)


@pytest.mark.parametrize("arch", ["encoder", "masked_lm", "causal_lm"])
def test_an_exported_deep_prompt_scores_the_same_in_peft(arch: str, tiny_models: dict[str, str], tmp_path: Path) -> None:
    base = tiny_models[arch]
    bb = FrozenBackbone(base)
    torch.manual_seed(5)
    prompt = torch.randn(4, bb.deep.width)  # type: ignore[union-attr]
    adapter = write_adapter(tmp_path / "adapter", *export(bb, prompt, base))
    model = PeftModel.from_pretrained(LOADERS[arch].from_pretrained(base), str(adapter)).eval()
    assert model.peft_config["default"].peft_type == "PREFIX_TUNING"
    assert torch.equal(model.prompt_encoder["default"].embedding.weight.detach(), prompt)
    mine, peft_out = ours(bb, TEXTS, prompt), theirs(model, bb, TEXTS)
    for a, b in zip(mine, peft_out, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    zero = ours(bb, TEXTS[:1], torch.zeros_like(prompt))[0]
    assert not torch.allclose(zero, mine[0], atol=1e-3)  # the prefix matters: the comparison is not vacuous


def test_the_exported_config_is_what_peft_writes(tiny_causal_lm: str, tmp_path: Path) -> None:
    pm = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_causal_lm),
                        PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    pm.save_pretrained(tmp_path / "peft")
    written = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    bb = FrozenBackbone(tiny_causal_lm)
    config, weights = export(bb, torch.randn(3, bb.deep.width), tiny_causal_lm)  # type: ignore[union-attr]
    exported = json.loads(config)
    assert sorted(exported) == sorted(written)  # same keys: PEFT loads it without warnings
    keys = ("peft_type", "task_type", "num_virtual_tokens", "num_layers", "num_attention_heads", "token_dim",
            "num_transformer_submodules")
    assert {k: exported[k] for k in keys} == {k: written[k] for k in keys}
    assert exported["prefix_projection"] is False and exported["inference_mode"] is True
    assert prompt_kind(weights) == DEEP


@pytest.mark.parametrize("projection", [False, True], ids=["plain", "reparameterised"])
def test_a_peft_prefix_imports_and_serves_peft_outputs(projection: bool, tiny_causal_lm: str, tmp_path: Path) -> None:
    """PEFT saves a reparameterised prefix already projected: both import as the prefix PEFT serves."""
    cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=projection,
                             encoder_hidden_size=16)
    pm = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_causal_lm), cfg)
    torch.manual_seed(9)
    with torch.no_grad():
        for p in pm.prompt_encoder.parameters():
            p.add_(torch.randn_like(p) * 0.5)  # a "trained" prefix, not the init
    pm.save_pretrained(tmp_path / "peft")
    imported = import_peft(*read_adapter(tmp_path / "peft"))
    bb = FrozenBackbone(tiny_causal_lm)
    assert imported.kind == DEEP and (imported.num_layers, imported.num_attention_heads) == (2, 4)
    assert list(imported.tensor.shape) == [3, bb.deep.width]  # type: ignore[union-attr]
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_causal_lm), str(tmp_path / "peft"))
    for a, b in zip(ours(bb, TEXTS, imported.tensor), theirs(loaded.eval(), bb, TEXTS), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_seq2seq_prefixes_are_refused_both_ways(tiny_models: dict[str, str], tmp_path: Path) -> None:
    bb = FrozenBackbone(tiny_models["seq2seq"])
    assert bb.deep is not None and bb.deep.n_slots == 4  # encoder and decoder layers
    with pytest.raises(InvalidArgument, match="decoder layers only"):
        export(bb, torch.randn(2, bb.deep.width), tiny_models["seq2seq"])
    cfg = {"peft_type": "PREFIX_TUNING", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": 2, "num_layers": 2,
           "num_attention_heads": 4, "token_dim": 32}
    with pytest.raises(InvalidArgument, match="SEQ_2_SEQ_LM prefix-tuning adapter cannot be imported"):
        import_peft(json.dumps(cfg).encode(), encode_prompt(torch.randn(2, 128)))


def test_a_prefix_adapter_of_the_wrong_shape_is_refused() -> None:
    cfg = {"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 2, "num_layers": 2,
           "num_attention_heads": 4, "token_dim": 32}
    with pytest.raises(InvalidArgument, match=r"num_layers=2 x 2 x token_dim=32, i.e. shape \[2, 128\]"):
        import_peft(json.dumps(cfg).encode(), encode_prompt(torch.randn(2, 96)))
    with pytest.raises(InvalidArgument, match="num_layers must be a positive integer"):
        import_peft(json.dumps({**cfg, "num_layers": None}).encode(), encode_prompt(torch.randn(2, 128)))
