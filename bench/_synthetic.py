"""Models and a tokenizer made here from configs, with random weights: what the GPU checks run on a machine
where nothing can be downloaded and no model package is installed (scripts/device_check.sh, bench/device.py,
tests/test_gpu.py). Needs torch, transformers and tokenizers only."""

from __future__ import annotations

import string
from pathlib import Path

WORDS = ("the a an and or but not is are was were be been good bad great awful film movie day night cat dog bird "
         "red green blue black white yes no up down hot cold one two three four five six seven eight nine ten "
         "this that these those what why how who where when very much more most less least it he she they we you "
         "i me my your our their of in on at to for with from by about as into over after before under between "
         "love hate like dislike happy sad angry calm fast slow big small long short new old first last time year "
         "people way thing man woman child world life hand part place case week company system program question "
         "work government number point home water room mother area money story fact month lot right study book "
         "eye job word business issue side kind head house service friend father power hour game line end member "
         "law car city community name president team minute idea kid body information back parent face others "
         "level office door health person art war history party result change morning reason research girl guy "
         "moment air teacher force education positive negative neutral weather today hello there friend morning "
         "mat sat translate tell say go get make know think take see come want look use find give").split()


def word_tokenizer(folder: Path) -> None:
    """A WordPiece tokenizer over lower-case English words and single characters (BERT's specials). Built from a
    vocabulary dict (transformers 5) or a vocab.txt (transformers 4), whichever this version takes."""
    from transformers import BertTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS + chars + [f"##{c}" for c in chars])]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok: PreTrainedTokenizerBase | None
    try:
        tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    except TypeError:  # transformers 4: a vocab file
        tok = None
    if tok is None or len(tok) < len(vocab):
        tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    assert len(tok) == len(vocab), f"the tokenizer holds {len(tok)} of {len(vocab)} tokens"
    tok.save_pretrained(folder)


# A Llama-shaped causal LM of about one billion parameters (TinyLlama's shape with a 32k vocabulary).
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
            "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048}
LLAMA_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 256}


def causal_lm(folder: Path, shape: dict[str, int], dtype: str = "bf16", device: str = "cpu", seed: int = 0) -> str:
    """A random Llama-shaped causal LM saved with safetensors in `dtype`, with `word_tokenizer` beside it.
    Built on `device` (a GPU builds a 1B model in seconds) and initialised with a wide normal init, so its
    outputs depend on the context (a near-zero init would answer every row alike)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(**shape, bos_token_id=2, eos_token_id=3, pad_token_id=0, initializer_range=0.02,
                      tie_word_embeddings=False)
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch_dtype)
    model.save_pretrained(folder)
    word_tokenizer(folder)
    return str(folder)


def parameters(shape: dict[str, int]) -> int:
    """The Llama's parameter count from its shape alone (embeddings, attention with grouped keys, MLP, head)."""
    h, inter, layers, vocab = (shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"],
                               shape["vocab_size"])
    kv = h * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    return 2 * vocab * h + layers * per_layer + h
