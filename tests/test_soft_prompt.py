"""Mechanics of prompt application on tiny random models: mixed batches are exact, padding is right."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bank.codec import encode_prompt, sha256_hex
from promptbank_api.errors import InvalidArgument
from promptbank_domain.task import POOLINGS, ConfigError, TaskSpec
from workers.actor import BackboneWorker
from workers.backbone import ENCODER, MASKED_LM, FrozenBackbone
from workers.heads import Heads, mean_pool
from workers.protocol import ClassifyBatch
from workers.soft_prompt import PromptedBatch, build_batch, tokenize

TEXTS = ["a good day", "this is a much longer sentence about a terrible awful film", "ok", "the cat sat on the mat"]


def logits(heads: Heads, texts: list[str], prompts: list[torch.Tensor], tasks: list[TaskSpec],
           max_length: int) -> list[torch.Tensor]:
    """Row i's (K_i,) class logits under its own prompt and task, all rows in ONE forward."""
    ids = tokenize(heads.bb, texts, max_length)
    anchors = [heads.anchors(task, prompt) for task, prompt in zip(tasks, prompts, strict=True)]
    return heads.class_logits(tasks, heads.features(build_batch(heads.bb, ids, prompts), tasks), anchors)


@pytest.fixture(scope="module", params=["encoder", "causal_lm", "seq2seq", "masked_lm"])
def heads(request: pytest.FixtureRequest, tiny_models: dict[str, str]) -> Heads:
    bb = FrozenBackbone(tiny_models[request.param])
    assert bb.architecture == request.param
    return Heads(bb)


@pytest.mark.parametrize("n_tasks", [2, 3, 6])
def test_mixed_task_batch_equals_each_row_alone(heads: Heads, n_tasks: int) -> None:
    torch.manual_seed(n_tasks)
    h = heads.bb.hidden_size
    label_sets = [("negative", "positive"), ("cat", "dog", "bird"), ("yes", "no"), ("red", "green", "blue", "black"),
                  ("up", "down"), ("hot", "cold")]
    tasks = [TaskSpec(labels=label_sets[k], pooling=POOLINGS[k % 3]) for k in range(n_tasks)]  # every pooling
    prompts = [torch.randn(1 + 5 * k, h) for k in range(n_tasks)]  # a different prompt length per task
    rows = [(TEXTS[i % 4], i % n_tasks) for i in range(2 * n_tasks + 1)]
    with torch.no_grad():
        batch = logits(heads, [t for t, _ in rows], [prompts[k] for _, k in rows], [tasks[k] for _, k in rows], 64)
        for (text, k), got in zip(rows, batch, strict=True):
            alone = logits(heads, [text], [prompts[k]], [tasks[k]], 64)[0]
            assert got.shape == (len(tasks[k].labels),)
            torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)


def test_prompt_changes_the_output(heads: Heads) -> None:
    h, task = heads.bb.hidden_size, TaskSpec(labels=("negative", "positive"))
    with torch.no_grad():
        a = logits(heads, ["a good day"], [torch.zeros(4, h)], [task], 64)[0]
        b = logits(heads, ["a good day"], [torch.randn(4, h) * 3], [task], 64)[0]
    assert not torch.allclose(a, b)


def test_pooling_reads_all_positions_the_prompt_positions_or_the_text(tiny_encoder: str) -> None:
    heads = Heads(FrozenBackbone(tiny_encoder))
    on_all, on_prompt, on_text = (TaskSpec(labels=("a", "b"), pooling=p) for p in ("all", "prompt", "text"))
    assert TaskSpec(labels=("a", "b")).pooling == "all"
    ids, h = tokenize(heads.bb, TEXTS, 64), heads.bb.hidden_size
    prompts = [torch.randn(3, h) for _ in TEXTS]
    with torch.no_grad():
        batch = build_batch(heads.bb, ids, prompts)
        assert torch.equal(batch.prompt_mask.sum(1), torch.full((len(TEXTS),), 3.0))
        f_all, f_prompt, f_text = (heads.features(batch, [t] * 4) for t in (on_all, on_prompt, on_text))
        assert not torch.allclose(f_prompt, f_text)
        # "all" is the mean over every real position: the count-weighted mean of the other two poolings
        hidden = heads.bb.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids).last_hidden_state
        n_text = batch.text_mask.sum(1, keepdim=True)
        mixed = (3 * mean_pool(hidden, batch.prompt_mask) + n_text * mean_pool(hidden, batch.text_mask)) / (3 + n_text)
        torch.testing.assert_close(f_all, F.normalize(mixed, dim=-1), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(f_all, f_prompt) and not torch.allclose(f_all, f_text)
        # A row without a prompt (zero-shot) has no prompt positions: it pools its text whatever the task says.
        bare = build_batch(heads.bb, ids, [torch.zeros(0, h)] * len(TEXTS))
        for t in (on_all, on_prompt):
            torch.testing.assert_close(heads.features(bare, [t] * 4), heads.features(bare, [on_text] * 4))


def test_padding_never_sits_between_prompt_and_text(heads: Heads) -> None:
    """Right padding: each row's prompt and text are contiguous from position 0, pads only after them, and a
    padded row's features equal the row alone (no pad leaks in)."""
    h = heads.bb.hidden_size
    ids = tokenize(heads.bb, TEXTS, 64)
    prompts = [torch.randn(5, h), torch.randn(2, h), torch.randn(5, h), torch.randn(8, h)]
    tasks = [TaskSpec(labels=("a", "b"), pooling=POOLINGS[i % 3]) for i in range(len(ids))]  # every pooling
    with torch.no_grad():
        batch = build_batch(heads.bb, ids, prompts)
        together = heads.features(batch, tasks)
        for i, p in enumerate(prompts):
            real = batch.attention_mask[i].nonzero().squeeze(-1)
            assert torch.equal(real, torch.arange(len(ids[i]) + p.shape[0]))  # contiguous from 0: pads at the end
            assert torch.equal(batch.position_ids[i, real], torch.arange(len(real)))
            # encoders: the prompt follows the leading [CLS]; LMs: the prompt comes first (PEFT's placement)
            start = 1 if heads.bb.architecture in (ENCODER, MASKED_LM) else 0
            torch.testing.assert_close(batch.inputs_embeds[i, start : start + p.shape[0]], p)
            alone = heads.features(build_batch(heads.bb, [ids[i]], [p]), [tasks[i]])
            torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-5)


def test_noise_moves_only_its_rows_own_token_embeddings(heads: Heads) -> None:
    h = heads.bb.hidden_size
    ids = tokenize(heads.bb, TEXTS, 64)
    prompts = [torch.randn(2 + i, h) for i in range(len(ids))]
    noise = [torch.randn(len(r), h) if i != 1 else None for i, r in enumerate(ids)]  # row 1: none
    with torch.no_grad():
        clean = build_batch(heads.bb, ids, prompts)
        noisy, plain = build_batch(heads.bb, ids, prompts, noise=noise), build_batch(heads.bb, ids, prompts)
        delta = noisy.inputs_embeds - plain.inputs_embeds
        for i, n in enumerate(noise):
            own = plain.text_mask[i].bool()
            assert torch.equal(delta[i, ~own], torch.zeros_like(delta[i, ~own]))  # prompt and padding untouched
            torch.testing.assert_close(delta[i, own], n if n is not None else torch.zeros(len(ids[i]), h))
        assert torch.equal(noisy.attention_mask, plain.attention_mask)
        unset = build_batch(heads.bb, ids, prompts, noise=[None] * len(ids))  # rows without noise: the plain batch
        assert torch.equal(unset.inputs_embeds, clean.inputs_embeds)
    with pytest.raises(ValueError, match="noise rows"):
        build_batch(heads.bb, ids, prompts, noise=noise[:2])


def test_label_words_must_be_distinct(tiny_causal_lm: str) -> None:
    heads = Heads(FrozenBackbone(tiny_causal_lm))
    with pytest.raises(ConfigError, match="distinct"):
        heads.labels_for(TaskSpec(labels=("a", "b"), label_words=("running", "running")))


@pytest.mark.parametrize("kwargs,match", [
    ({"labels": ("only",)}, "at least 2 labels"),
    ({"labels": ("a", "a")}, "distinct"),
    ({"labels": ("a", "b"), "label_texts": ("x",)}, "label_texts has 1 entries"),
])
def test_task_spec_validation_names_the_problem(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TaskSpec(**kwargs)


def test_a_row_longer_than_the_backbone_is_invalid_argument(tiny_encoder: str) -> None:
    """Not an internal error: the caller can fix it (a shorter prompt or text)."""
    bb = FrozenBackbone(tiny_encoder)
    ids = tokenize(bb, ["a short text"], 64)
    with pytest.raises(InvalidArgument, match="positions; the backbone allows 256"):
        build_batch(bb, ids, [torch.zeros(bb.max_positions, bb.hidden_size)])


def test_a_replica_cuts_forwards_within_the_caps_its_batch_carries(tiny_encoder: str) -> None:
    """The coordinator's batching policy sets each forward's caps in the batch; the replica keeps within them
    (it has none of its own), and a row's result does not depend on how its batch was cut."""
    w = BackboneWorker(tiny_encoder, num_threads=1)
    blobs = {sha256_hex(b): b for b in (encode_prompt(torch.randn(n, w.bb.hidden_size)) for n in (2, 7))}
    keys = list(blobs)
    tasks = dict.fromkeys(keys, TaskSpec(labels=("negative", "positive")))
    rows = [(keys[i % 2], TEXTS[i % 4] + " word" * i) for i in range(12)]
    alone = [w.classify(ClassifyBatch([row], blobs, tasks))[0] for row in rows]  # caches prompts and anchors
    shapes: list[tuple[int, int]] = []  # (rows, padded positions) of each forward
    features = w.heads.features

    def counted(batch: PromptedBatch, row_tasks: list[TaskSpec]) -> torch.Tensor:
        shapes.append((int(batch.attention_mask.shape[0]), int(batch.attention_mask.shape[1])))
        return features(batch, row_tasks)

    w.heads.features = counted  # type: ignore[method-assign]
    forwards = {}
    for max_rows, max_positions in [(64, 4096), (3, 4096), (64, 40)]:
        shapes.clear()
        out = w.classify(ClassifyBatch(rows, {}, tasks, max_rows=max_rows, max_positions=max_positions))
        assert sum(n for n, _ in shapes) == len(rows)
        assert all(n <= max_rows and (n == 1 or n * t <= max_positions) for n, t in shapes), shapes
        for got, want in zip(out, alone, strict=True):
            assert got == pytest.approx(want, abs=1e-5)
        forwards[max_rows, max_positions] = len(shapes)
    assert forwards[3, 4096] >= 4 and forwards[64, 40] > forwards[64, 4096], forwards  # the caps shaped them
