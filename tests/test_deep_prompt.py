"""Deep prompts on tiny random models of every architecture: a batch that mixes deep prompts of different
lengths, input prompts and bare rows gives each row what it gives alone (either padding side), the wrapped
attention leaves prompt-free forwards untouched, and the layout is found from the model itself."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from promptbank_api.errors import InvalidArgument
from promptbank_domain.task import POOLINGS, TaskSpec
from workers.backbone import _LOADERS, FrozenBackbone
from workers.deep_prompt import DeepPrompt
from workers.heads import Heads
from workers.soft_prompt import RowPrompt, build_batch, tokenize

TEXTS = ["a good day", "this is a much longer sentence about a terrible awful film", "ok", "the cat sat on the mat"]
LAYERS = {"encoder": 2, "causal_lm": 2, "seq2seq": 4, "masked_lm": 2}  # self-attention modules (T5: 2 + 2)


@pytest.fixture(scope="module", params=["encoder", "causal_lm", "seq2seq", "masked_lm"])
def heads(request: pytest.FixtureRequest, tiny_models: dict[str, str]) -> Heads:
    bb = FrozenBackbone(tiny_models[request.param])
    assert bb.architecture == request.param
    return Heads(bb)


def deep(bb: FrozenBackbone, n: int, scale: float = 1.0) -> DeepPrompt:
    assert bb.deep is not None
    return DeepPrompt(torch.randn(n, bb.deep.width) * scale)


def logits(heads: Heads, texts: list[str], prompts: list[RowPrompt], tasks: list[TaskSpec],
           pad_left: bool = False) -> list[torch.Tensor]:
    """Row i's class logits under its own prompt and task, all rows in ONE forward."""
    ids = tokenize(heads.bb, texts, 64)
    anchors = [heads.anchors(t, p) for t, p in zip(tasks, prompts, strict=True)]
    batch = build_batch(heads.bb, ids, prompts, pad_left=pad_left)
    return heads.class_logits(tasks, heads.features(batch, tasks), anchors)


def test_layout_has_one_slot_per_self_attention_layer(heads: Heads) -> None:
    layout = heads.bb.deep
    assert layout is not None and layout.n_slots == LAYERS[heads.bb.architecture]
    assert layout.kv_heads * layout.head_dim == heads.bb.hidden_size  # the tiny models: 4 heads x 8
    assert layout.width == layout.n_slots * 2 * heads.bb.hidden_size


@pytest.mark.parametrize("pad_left", [False, True], ids=["right-padded", "left-padded"])
def test_mixed_kinds_in_one_batch_equal_each_row_alone(heads: Heads, pad_left: bool) -> None:
    torch.manual_seed(7)
    bb, h = heads.bb, heads.bb.hidden_size
    tasks = [TaskSpec(labels=("negative", "positive"), pooling=POOLINGS[0]), TaskSpec(labels=("cat", "dog", "bird")),
             TaskSpec(labels=("yes", "no"), pooling="text")]
    prompts: list[RowPrompt] = [deep(bb, 2), deep(bb, 7), torch.randn(4, h), torch.zeros(0, h)]
    rows = [(TEXTS[i % 4], i % 4, i % 3) for i in range(9)]
    with torch.no_grad():
        together = logits(heads, [t for t, _, _ in rows], [prompts[p] for _, p, _ in rows],
                          [tasks[k] for _, _, k in rows], pad_left=pad_left)
        for (text, p, k), got in zip(rows, together, strict=True):
            alone = logits(heads, [text], [prompts[p]], [tasks[k]])[0]
            assert got.shape == (len(tasks[k].labels),)
            torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)


def test_a_deep_prompt_changes_every_layer_it_reaches(heads: Heads) -> None:
    bb, task = heads.bb, TaskSpec(labels=("negative", "positive"))
    torch.manual_seed(3)
    with torch.no_grad():
        bare = logits(heads, ["a good day"], [torch.zeros(0, bb.hidden_size)], [task])[0]
        zero = logits(heads, ["a good day"], [DeepPrompt(torch.zeros(3, bb.deep.width))], [task])[0]  # type: ignore[union-attr]
        some = logits(heads, ["a good day"], [deep(bb, 3, 3.0)], [task])[0]
    assert not torch.allclose(bare, some) and not torch.allclose(zero, some)


def test_prompt_free_forwards_are_untouched(heads: Heads, tiny_models: dict[str, str]) -> None:
    """The wrapped attention is the model's own when no row has a deep prompt: outputs are bit-identical to
    the same model loaded without it."""
    bb = heads.bb
    path = tiny_models[bb.architecture]
    plain = _LOADERS[bb.architecture].from_pretrained(path).eval()
    assert bb.model.config._attn_implementation == "promptbank+" + plain.config._attn_implementation
    enc = bb.tokenizer(TEXTS, padding=True, return_tensors="pt")
    kw = {"decoder_input_ids": enc["input_ids"][:, :3]} if AutoConfig.from_pretrained(path).is_encoder_decoder else {}
    with torch.no_grad():
        ours, theirs = bb.model(**enc, **kw), plain(**enc, **kw)
    key = "last_hidden_state" if hasattr(ours, "last_hidden_state") and ours.last_hidden_state is not None else "logits"
    assert torch.equal(getattr(ours, key), getattr(theirs, key))


def test_a_deep_prompt_of_the_wrong_width_is_refused(heads: Heads) -> None:
    bb = heads.bb
    ids = tokenize(bb, ["a good day"], 64)
    with pytest.raises(InvalidArgument, match=r"deep prompt for this backbone is \[P, "):
        build_batch(bb, ids, [DeepPrompt(torch.zeros(3, bb.hidden_size))])
    with pytest.raises(InvalidArgument, match="positions; the backbone allows"):
        build_batch(bb, ids, [DeepPrompt(torch.zeros(bb.max_positions, bb.deep.width))])  # type: ignore[union-attr]
