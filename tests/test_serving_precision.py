"""Serving precision on the CPU: a backbone served in bf16 loads in bf16, keeps the fp32 fingerprint (a version
pins the checkpoint, not the dtype), and mixed batches stay exact within the dtype's documented tolerance
(promptbank_domain.precision.MIXED_BATCH_TOL): labels identical, scores within it, greedy generation equal to
each row alone. Prompts trained in one dtype serve in another."""

from __future__ import annotations

import pytest
import torch

from bank.codec import encode_prompt, read_prompt, sha256_hex
from promptbank_domain.precision import MIXED_BATCH_TOL, check_dtype, resolve_dtype
from promptbank_domain.task import POOLINGS, TaskSpec
from promptbank_domain.train_config import TrainConfig
from promptbank_kinds import DEEP, Row
from workers.actor import BackboneWorker
from workers.backbone import FrozenBackbone
from workers.engine import Engine
from workers.generate import generate
from workers.heads import Heads
from workers.protocol import ClassifyBatch, EventKind, GenerateRequest, GenerationSettings, TrainRequest
from workers.soft_prompt import RowPrompt, build_batch, tokenize

TEXTS = ["a good day", "this is a much longer sentence about a terrible awful film", "ok", "the cat sat on the mat",
         "one two three four five six seven eight", "why not"]
ATOL, RTOL = MIXED_BATCH_TOL["bf16"]


def test_auto_is_fp32_on_a_cpu_and_names_are_checked() -> None:
    assert resolve_dtype("auto", on_gpu=False) == "fp32"
    assert resolve_dtype("", on_gpu=True, gpu_has_bf16=True) == "bf16"
    assert resolve_dtype("auto", on_gpu=True, gpu_has_bf16=False) == "fp16"
    assert resolve_dtype("fp16", on_gpu=False) == "fp16"
    with pytest.raises(ValueError, match="'int8' must be one of"):
        check_dtype("int8")


@pytest.mark.parametrize("arch", ["encoder", "causal_lm", "seq2seq", "masked_lm"])
def test_a_bf16_backbone_loads_in_bf16_with_the_fp32_fingerprint(tiny_models: dict[str, str], arch: str) -> None:
    full, half = FrozenBackbone(tiny_models[arch]), FrozenBackbone(tiny_models[arch], dtype="bf16")
    assert (full.dtype, half.dtype) == ("fp32", "bf16")
    assert {p.dtype for p in full.model.parameters()} == {torch.float32}
    assert {p.dtype for p in half.model.parameters() if p.is_floating_point()} == {torch.bfloat16}
    assert half.info.fingerprint == full.info.fingerprint  # the checkpoint's identity, whatever the dtype
    assert half.info == full.info


def _logits(heads: Heads, texts: list[str], prompts: list[RowPrompt], tasks: list[TaskSpec]) -> list[torch.Tensor]:
    """Each row's class logits, all rows in ONE padded forward (the hardest case for exactness)."""
    ids = tokenize(heads.bb, texts, 64)
    anchors = [heads.anchors(t, p) for t, p in zip(tasks, prompts, strict=True)]
    return heads.class_logits(tasks, heads.features(build_batch(heads.bb, ids, prompts), tasks), anchors)


@pytest.mark.parametrize("arch", ["encoder", "causal_lm", "seq2seq", "masked_lm"])
def test_a_mixed_batch_in_bf16_scores_each_row_as_it_scores_alone(tiny_models: dict[str, str], arch: str) -> None:
    heads = Heads(FrozenBackbone(tiny_models[arch], dtype="bf16"))
    g = torch.Generator().manual_seed(0)
    h = heads.bb.hidden_size
    prompts: list[RowPrompt] = [torch.randn(1 + 4 * k, h, generator=g) for k in range(3)]  # fp32, as stored
    if heads.bb.deep is not None:
        prompts += [Row(torch.randn(2 + 3 * k, heads.bb.deep.width, generator=g), DEEP) for k in range(2)]
    label_sets = [("negative", "positive"), ("cat", "dog", "bird"), ("yes", "no"), ("red", "green", "blue")]
    tasks = [TaskSpec(labels=label_sets[k % 4], pooling=POOLINGS[k % 3]) for k in range(len(prompts))]
    rows = [(TEXTS[i % len(TEXTS)], i % len(prompts)) for i in range(2 * len(prompts) + 1)]
    moved = 0.0
    with torch.no_grad():
        mixed = _logits(heads, [t for t, _ in rows], [prompts[k] for _, k in rows], [tasks[k] for _, k in rows])
        for (text, k), got in zip(rows, mixed, strict=True):
            alone = _logits(heads, [text], [prompts[k]], [tasks[k]])[0]
            assert got.dtype == torch.bfloat16
            assert int(got.float().argmax()) == int(alone.float().argmax()), (got, alone)
            torch.testing.assert_close(got.float(), alone.float(), atol=ATOL, rtol=RTOL)
            moved = max(moved, float((got.float() - alone.float()).abs().max()))
    full = Heads(FrozenBackbone(tiny_models[arch]))  # fp32: the tolerance is the dtype's, not slack for a bug
    with torch.no_grad():
        exact = _logits(full, [t for t, _ in rows], [prompts[k] for _, k in rows], [tasks[k] for _, k in rows])
        for (text, k), got in zip(rows, exact, strict=True):
            torch.testing.assert_close(got, _logits(full, [text], [prompts[k]], [tasks[k]])[0], atol=1e-5, rtol=1e-5)
    print(f"{arch}: bf16 mixed-batch scores moved by at most {moved:.4f}")


def test_a_bf16_replica_classifies_mixed_batches_as_each_row_alone(tiny_causal_lm: str) -> None:
    """Through the worker's own path (length groups, the prompt cache): identical labels, scores within ATOL."""
    w = BackboneWorker(tiny_causal_lm, num_threads=1, dtype="bf16")
    assert w.info().dtype == "bf16" and w.info().devices == ("cpu",)
    assert w.bb.deep is not None
    g = torch.Generator().manual_seed(1)
    blobs = [encode_prompt(torch.randn(n, w.bb.hidden_size, generator=g)) for n in (2, 9)]
    blobs += [encode_prompt(torch.randn(n, w.bb.deep.width, generator=g), kind=DEEP) for n in (3, 6)]
    prompts = {sha256_hex(b): b for b in blobs}
    keys = list(prompts)
    tasks = dict.fromkeys(keys, TaskSpec(labels=("negative", "positive", "neutral")))
    rows = [(keys[i % len(keys)], TEXTS[i % len(TEXTS)]) for i in range(12)]
    mixed = w.classify(ClassifyBatch(rows, prompts, tasks))
    for row, got in zip(rows, mixed, strict=True):
        alone = w.classify(ClassifyBatch([row], prompts, tasks))[0]
        assert max(range(3), key=got.__getitem__) == max(range(3), key=alone.__getitem__)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(alone), atol=ATOL, rtol=RTOL)


def _req(text: str, n: int) -> GenerateRequest:
    return GenerateRequest("", {}, text, max_new_tokens=n)


def test_greedy_generation_in_bf16_equals_each_row_alone(tiny_causal_lm: str) -> None:
    """Continuous batching in bf16 (input, deep and bare rows joining together) gives each row the tokens it
    gets decoding alone through the one-sequence path."""
    bb = FrozenBackbone(tiny_causal_lm, dtype="bf16")
    assert bb.deep is not None
    g = torch.Generator().manual_seed(0)
    prompts: list[RowPrompt | None] = [torch.randn(4, bb.hidden_size, generator=g),
                                       Row(torch.randn(3, bb.deep.width, generator=g) * 2, DEEP), None,
                                       Row(torch.randn(7, bb.deep.width, generator=g) * 2, DEEP),
                                       torch.randn(9, bb.hidden_size, generator=g), None]
    engine = Engine(bb, GenerationSettings(max_seqs=8))
    assert engine.slab.dtype == torch.bfloat16
    try:
        streams = [engine.submit(_req(t, 12), p) for t, p in zip(TEXTS, prompts, strict=True)]
        batched = ["".join(piece.text for piece in s) for s in streams]
    finally:
        engine.close()
    alone = ["".join(piece.text for piece in generate(bb, p, t, 12)) for t, p in zip(TEXTS, prompts, strict=True)]
    assert batched == alone


def _train(w: BackboneWorker, job: str, init: bytes | None = None) -> bytes:
    cfg = TrainConfig.from_dict({"epochs": 1, "batch_size": 4, "num_virtual_tokens": 4, "prompt_kind": "input",
                                 "eval_fraction": 0.25, "seed": 0})
    examples = [(f"{w_} day number {i}", "positive" if w_ == "good" else "negative")
                for i in range(8) for w_ in ("good", "bad")]
    events = list(w.train(TrainRequest(job, TaskSpec(labels=("negative", "positive")), cfg, examples,
                                       init_prompt=init)))
    [result] = [e for e in events if e.kind is EventKind.RESULT]
    return result.prompt


def test_a_prompt_trained_in_one_dtype_serves_in_the_other(tiny_encoder: str) -> None:
    full = BackboneWorker(tiny_encoder, num_threads=1)
    half = BackboneWorker(tiny_encoder, num_threads=1, dtype="bf16")
    assert full.info().fingerprint == half.info().fingerprint
    task = TaskSpec(labels=("negative", "positive"))
    for trained_on, served_on in ((full, half), (half, full)):
        blob = _train(trained_on, f"job-{trained_on.bb.dtype}")
        tensor, _ = read_prompt(blob)
        assert tensor.dtype == torch.float32  # the bank keeps fp32 whichever dtype trained it
        key = sha256_hex(blob)
        rows = [(key, t) for t in TEXTS]
        here = trained_on.classify(ClassifyBatch(rows, {key: blob}, {key: task}))
        there = served_on.classify(ClassifyBatch(rows, {key: blob}, {key: task}))
        for a, b in zip(here, there, strict=True):
            assert a == pytest.approx(b, abs=0.5)  # bf16 rounding of a 20x-scaled cosine, not another model
