"""PEFT prompt-tuning adapters <-> promptbank prompts, proven against the real `peft` library on tiny models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import peft  # a dev dependency: missing, these tests fail
import pytest
import torch
from safetensors.torch import save as st_save
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    BertConfig,
    BertForMaskedLM,
    T5Config,
    T5ForConditionalGeneration,
)

from bank.codec import encode_prompt
from bank.peft_format import ImportedPrompt, export_peft, import_peft
from promptbank.peft_files import read_adapter, write_adapter
from promptbank_api.errors import InvalidArgument
from promptbank_domain.task import TaskSpec
from workers.backbone import FrozenBackbone
from workers.heads import Heads
from workers.soft_prompt import build_batch, tokenize


def read_dir(path: Path) -> ImportedPrompt:
    """An adapter folder as the CLI sends it and the server reads it."""
    return import_peft(*read_adapter(path))
from peft import LoraConfig, PeftConfig, PeftModel, PromptTuningConfig, get_peft_model  # noqa: E402

TASK = {"labels": ["negative", "positive"], "label_words": ["bad", "good"], "kind": "classification"}
TEXTS = ["what a great day", "this is awful and i want my money back right now", "ok"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def lm(tiny_causal_lm: str) -> FrozenBackbone:
    return FrozenBackbone(tiny_causal_lm)


def _export(prompt: torch.Tensor, base: str, architecture: str, extra: dict | None = None) -> tuple[bytes, bytes]:
    n, dim = prompt.shape
    return export_peft(encode_prompt(prompt), base_model=base, revision="", architecture=architecture,
                       num_virtual_tokens=n, token_dim=dim, task=TASK, extra=extra)


def _promptbank_logits(lm: FrozenBackbone, texts: list[str], prompt: torch.Tensor) -> torch.Tensor:
    """(B, V) next-token logits at each row's last real token, one promptbank forward."""
    with torch.no_grad():
        ids = tokenize(lm, texts, max_length=200)
        return Heads(lm).features(build_batch(lm, ids, [prompt] * len(texts)), [TaskSpec.from_dict(TASK)] * len(texts))


def _peft_logits(model: PeftModel, lm: FrozenBackbone, texts: list[str], n_virtual: int) -> torch.Tensor:
    """(B, V) PEFT logits at each row's last real token. Right padding (this tokenizer's side): PEFT prepends
    the prompt to the padded row, so the prompt touches the text only when the pads are on the right (with
    left padding it sits in front of the pads: PEFT bug 1093). PEFT passes no position_ids, so GPT-2 counts
    positions 0.. over prompt + text, as promptbank does."""
    enc = lm.tokenizer(texts, padding=True, return_tensors="pt")
    assert lm.tokenizer.padding_side == "right"
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits  # (B, n+T, V)
    last = n_virtual + enc["attention_mask"].sum(1) - 1  # (B,)
    return out[torch.arange(len(texts)), last]


def _load_peft(loader, base: str, adapter: Path) -> PeftModel:  # type: ignore[no-untyped-def]
    model = PeftModel.from_pretrained(loader.from_pretrained(base), str(adapter))
    return model.eval()


# 1. promptbank -> PEFT ---------------------------------------------------------------------------------------


def test_exported_prompt_gives_peft_the_same_logits(lm: FrozenBackbone, tiny_causal_lm: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    prompt = torch.randn(5, lm.hidden_size)  # (n, H)
    adapter = write_adapter(tmp_path / "adapter", *_export(prompt, tiny_causal_lm, "causal_lm", {"version": 3}))
    model = _load_peft(AutoModelForCausalLM, tiny_causal_lm, adapter)
    assert type(model).__name__ == "PeftModelForCausalLM"
    assert torch.equal(model.prompt_encoder["default"].embedding.weight.detach(), prompt)

    # batch of 1
    ours = _promptbank_logits(lm, TEXTS[:1], prompt)
    theirs = _peft_logits(model, lm, TEXTS[:1], 5)
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=0)

    # several texts of different lengths in one batch: each row equals PEFT's and its own single-row run
    ours = _promptbank_logits(lm, TEXTS, prompt)
    theirs = _peft_logits(model, lm, TEXTS, 5)
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=0)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(_peft_logits(model, lm, [text], 5)[0], ours[i], atol=ATOL, rtol=0)
    # and the prompt matters (the comparison is not vacuous)
    assert not torch.allclose(_promptbank_logits(lm, TEXTS[:1], torch.zeros_like(prompt)), ours[:1], atol=1e-3)


def test_exported_config_is_what_peft_writes(tiny_causal_lm: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    pm = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_causal_lm),
                        PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="RANDOM"))
    pm.save_pretrained(tmp_path / "peft")
    theirs = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    cfg_bytes, _ = _export(torch.randn(4, 32), tiny_causal_lm, "causal_lm")
    ours = json.loads(cfg_bytes)
    assert sorted(ours) == sorted(theirs)  # same keys: PEFT loads it without "unexpected keyword" warnings
    assert ours["base_model_name_or_path"] == tiny_causal_lm
    assert {k: ours[k] for k in ("peft_type", "task_type", "num_virtual_tokens", "token_dim", "inference_mode",
                                 "num_transformer_submodules", "prompt_tuning_init")} == {
        "peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 4, "token_dim": 32,
        "inference_mode": True, "num_transformer_submodules": 1, "prompt_tuning_init": "RANDOM"}


# 2. PEFT -> promptbank ---------------------------------------------------------------------------------------


def test_peft_trained_adapter_imports_with_the_same_logits(lm: FrozenBackbone, tiny_causal_lm: str,
                                                           tmp_path: Path) -> None:
    torch.manual_seed(7)
    cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6, prompt_tuning_init="RANDOM")
    pm = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_causal_lm), cfg)
    pm.save_pretrained(tmp_path / "peft")

    imp = read_dir(tmp_path / "peft")
    assert torch.equal(imp.tensor, pm.prompt_encoder["default"].embedding.weight.detach())
    assert (imp.num_virtual_tokens, imp.token_dim, imp.num_transformer_submodules) == (6, 32, 1)
    assert (imp.task_type, imp.architecture, imp.peft_version) == ("CAUSAL_LM", "causal_lm", peft.__version__)
    assert imp.task is None and imp.extra is None  # PEFT knows nothing of promptbank's task spec

    model = _load_peft(AutoModelForCausalLM, tiny_causal_lm, tmp_path / "peft")
    torch.testing.assert_close(_promptbank_logits(lm, TEXTS, imp.tensor), _peft_logits(model, lm, TEXTS, 6),
                               atol=ATOL, rtol=0)

    # and back out again: the same bytes of prompt go to PEFT
    cfg_bytes, st_bytes = _export(imp.tensor, tiny_causal_lm, "causal_lm")
    again = import_peft(cfg_bytes, st_bytes)
    assert torch.equal(again.tensor, imp.tensor) and again.task == TASK


# 3. refusals -------------------------------------------------------------------------------------------------


def test_pickle_adapter_is_refused(tiny_causal_lm: str, tmp_path: Path) -> None:
    cfg_bytes, _ = _export(torch.randn(4, 32), tiny_causal_lm, "causal_lm")
    d = tmp_path / "bin-only"
    d.mkdir()
    (d / "adapter_config.json").write_bytes(cfg_bytes)
    torch.save({"prompt_embeddings": torch.randn(4, 32)}, d / "adapter_model.bin")  # what old PEFT wrote
    with pytest.raises(ValueError, match="pickle.*safetensors"):
        read_adapter(d)  # the client refuses before anything leaves the machine
    with pytest.raises(InvalidArgument, match="pickle"):
        import_peft(cfg_bytes, (d / "adapter_model.bin").read_bytes())


def test_lora_adapter_is_refused_by_name(tiny_causal_lm: str, tmp_path: Path) -> None:
    cfg = LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"])
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_causal_lm), cfg).save_pretrained(tmp_path / "lora")
    with pytest.raises(InvalidArgument, match="LORA.*only PROMPT_TUNING"):
        read_dir(tmp_path / "lora")


@pytest.mark.parametrize("weights", [b"", b"garbage, not a safetensors file", b"\xff" * 64, b"{}"])
def test_garbage_weights_are_refused(weights: bytes, tiny_causal_lm: str) -> None:
    cfg_bytes, _ = _export(torch.randn(4, 32), tiny_causal_lm, "causal_lm")
    with pytest.raises(InvalidArgument):
        import_peft(cfg_bytes, weights)


def test_bad_configs_and_shapes_are_refused(tiny_causal_lm: str, tmp_path: Path) -> None:
    cfg_bytes, st_bytes = _export(torch.randn(4, 32), tiny_causal_lm, "causal_lm")
    cfg = json.loads(cfg_bytes)

    def with_cfg(**changes: object) -> bytes:
        return json.dumps({**cfg, **changes}).encode()

    with pytest.raises(InvalidArgument, match=r"shape \[4, 32\].*num_virtual_tokens=5"):
        import_peft(with_cfg(num_virtual_tokens=5), st_bytes)
    with pytest.raises(InvalidArgument, match="token_dim=64"):
        import_peft(with_cfg(token_dim=64), st_bytes)
    with pytest.raises(InvalidArgument, match="num_transformer_submodules=2"):
        import_peft(with_cfg(num_transformer_submodules=2), st_bytes)  # 2 only means something for seq2seq
    with pytest.raises(InvalidArgument, match="'LORA' is not supported"):
        import_peft(with_cfg(peft_type="LORA"), st_bytes)
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        import_peft(b"{not json", st_bytes)
    with pytest.raises(InvalidArgument, match="num_virtual_tokens must be a positive integer"):
        import_peft(with_cfg(num_virtual_tokens=None), st_bytes)
    three_d = st_save({"prompt_embeddings": torch.randn(1, 4, 32)})
    with pytest.raises(InvalidArgument, match="2-D"):
        import_peft(cfg_bytes, three_d)
    with_head = st_save({"prompt_embeddings": torch.randn(4, 32), "classifier.weight": torch.randn(2, 32)})
    with pytest.raises(InvalidArgument, match="classifier.weight"):
        import_peft(cfg_bytes, with_head)  # a trained head (modules_to_save) cannot come along
    with pytest.raises(InvalidArgument, match="finite"):
        import_peft(cfg_bytes, st_save({"prompt_embeddings": torch.full((4, 32), float("nan"))}))
    # export checks the version's own numbers too
    with pytest.raises(InvalidArgument, match=r"shape \[4, 32\].*num_virtual_tokens=5"):
        export_peft(encode_prompt(torch.randn(4, 32)), base_model="m", revision="", architecture="causal_lm",
                    num_virtual_tokens=5, token_dim=32, task=TASK, extra=None)
    with pytest.raises(InvalidArgument, match="'vision'"):
        export_peft(encode_prompt(torch.randn(4, 32)), base_model="m", revision="", architecture="vision",
                    num_virtual_tokens=4, token_dim=32, task=TASK, extra=None)


# 4. encoders (and masked LM, seq2seq) ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_encoder_round_trip_is_bit_exact_and_peft_loads_it(dtype: torch.dtype, tiny_encoder: str,
                                                           tmp_path: Path) -> None:
    torch.manual_seed(5)
    prompt = torch.randn(8, 32).to(dtype)  # (n, H)
    extra = {"version": 2, "metrics": {"accuracy": 0.75}}
    cfg_bytes, st_bytes = export_peft(encode_prompt(prompt), base_model=tiny_encoder, revision="abc123",
                                      architecture="encoder", num_virtual_tokens=8, token_dim=32,
                                      task=TASK, extra=extra)
    imp = import_peft(cfg_bytes, st_bytes)
    assert imp.tensor.dtype == dtype and torch.equal(imp.tensor.view(torch.uint8), prompt.view(torch.uint8))
    assert (imp.architecture, imp.task_type, imp.base_model, imp.revision) == (
        "encoder", "FEATURE_EXTRACTION", tiny_encoder, "abc123")
    assert imp.task == TASK and imp.extra == extra

    d = write_adapter(tmp_path / "enc", cfg_bytes, st_bytes)
    assert torch.equal(read_dir(d).tensor, imp.tensor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unexpected keyword arguments" warning: only keys PEFT knows
        config = PeftConfig.from_pretrained(str(d))
    assert type(config) is PromptTuningConfig
    assert (config.peft_type, config.task_type, config.num_virtual_tokens, config.token_dim) == (
        "PROMPT_TUNING", "FEATURE_EXTRACTION", 8, 32)
    assert (config.base_model_name_or_path, config.revision) == (tiny_encoder, "abc123")


def test_encoder_adapter_applies_in_peft_before_cls(tiny_encoder: str, tmp_path: Path) -> None:
    """PEFT (FEATURE_EXTRACTION) prepends the prompt before [CLS]; promptbank puts it right after [CLS].
    The tensor is portable, the placement is not: this pins down what PEFT does with an exported prompt."""
    torch.manual_seed(6)
    prompt = torch.randn(3, 32)
    d = write_adapter(tmp_path / "enc", *_export(prompt, tiny_encoder, "encoder"))
    model = _load_peft(AutoModel, tiny_encoder, d)
    base = AutoModel.from_pretrained(tiny_encoder).eval()
    ids = torch.tensor([[101, 2054, 1037, 2307, 2154, 102]])  # [CLS] what a great day [SEP]
    with torch.no_grad():
        theirs = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state  # (1, 3+6, H)
        tok = base.get_input_embeddings()(ids)  # (1, 6, H)
        before_cls = base(inputs_embeds=torch.cat([prompt[None], tok], 1)).last_hidden_state
        after_cls = base(inputs_embeds=torch.cat([tok[:, :1], prompt[None], tok[:, 1:]], 1)).last_hidden_state
    torch.testing.assert_close(theirs, before_cls, atol=ATOL, rtol=0)
    assert not torch.allclose(theirs, after_cls, atol=1e-3)


def test_masked_lm_exports_as_feature_extraction_and_peft_applies_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base_dir = tmp_path / "mlm"
    BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(base_dir)
    prompt = torch.randn(2, 32)
    d = write_adapter(tmp_path / "adapter", *_export(prompt, str(base_dir), "masked_lm"))
    imp = read_dir(d)
    assert (imp.task_type, imp.architecture) == ("FEATURE_EXTRACTION", "masked_lm")  # from the metadata
    model = _load_peft(AutoModelForMaskedLM, str(base_dir), d)
    base = AutoModelForMaskedLM.from_pretrained(base_dir).eval()
    ids = torch.tensor([[1, 5, 6, 7, 2]])
    with torch.no_grad():
        theirs = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits  # (1, 2+5, V)
        ref = base(inputs_embeds=torch.cat([prompt[None], base.get_input_embeddings()(ids)], 1)).logits
    torch.testing.assert_close(theirs, ref, atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("tiny-t5")
    cfg = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    return str(path)


def test_seq2seq_prompt_goes_to_the_encoder_both_ways(tiny_t5: str, tmp_path: Path) -> None:
    torch.manual_seed(4)
    prompt = torch.randn(3, 32)
    d = write_adapter(tmp_path / "s2s", *_export(prompt, tiny_t5, "seq2seq"))
    model = _load_peft(AutoModelForSeq2SeqLM, tiny_t5, d)
    base = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()
    ids, dec = torch.tensor([[5, 6, 7, 8, 1]]), torch.tensor([[0, 9, 10]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        theirs = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits  # (1, 3, V)
        embeds = torch.cat([prompt[None], base.get_input_embeddings()(ids)], 1)  # (1, 3+5, H)
        ref = base(inputs_embeds=embeds, attention_mask=torch.ones(1, 8, dtype=torch.long), decoder_input_ids=dec)
    torch.testing.assert_close(theirs, ref.logits, atol=ATOL, rtol=0)

    # PEFT's own seq2seq adapter stores 2 x n rows (num_transformer_submodules=2); the decoder half is unused
    pm = get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(tiny_t5),
                        PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3, prompt_tuning_init="RANDOM"))
    pm.save_pretrained(tmp_path / "peft-s2s")
    imp = read_dir(tmp_path / "peft-s2s")
    weight = pm.prompt_encoder["default"].embedding.weight.detach()  # (2n, H)
    assert weight.shape == (6, 32) and imp.num_transformer_submodules == 2
    assert torch.equal(imp.tensor, weight[:3]) and imp.architecture == "seq2seq"
    pm.eval()
    with torch.no_grad():
        theirs = pm(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        embeds = torch.cat([imp.tensor[None], base.get_input_embeddings()(ids)], 1)
        ref = base(inputs_embeds=embeds, attention_mask=torch.ones(1, 8, dtype=torch.long), decoder_input_ids=dec)
    torch.testing.assert_close(theirs, ref.logits, atol=ATOL, rtol=0)
