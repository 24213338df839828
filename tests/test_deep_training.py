"""Training deep prompts on tiny random models: only the prefix moves, a deep job co-batched with input-prompt
jobs equals each job alone, a checkpoint resumes the same run, a stored deep prompt is a place to start,
and generation with a deep prompt through the KV cache equals decoding without one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bank.codec import PROMPT_KEY, read_prompt, read_safetensors
from promptbank_api.errors import InvalidArgument
from promptbank_domain.task import ConfigError, TaskSpec
from promptbank_domain.train_config import TrainConfig
from promptbank_kinds import DEEP, INPUT
from tests.test_train import DATA, TASK, TOPIC, TOPIC_DATA, final_prompt
from tests.workers_util import classify, train
from workers.actor import BackboneWorker
from workers.checkpoint import TrainState
from workers.deep_prompt import DeepPrompt, activations, prefixes
from workers.generate import generate
from workers.prepare import init_prompt
from workers.soft_prompt import build_batch, tokenize
from workers.train import Trainer, train_jobs

LM = {"label_words": ["bad", "good"]}


def deep_cfg(**kw: object) -> TrainConfig:
    return TrainConfig(**{"prompt_kind": DEEP, "num_virtual_tokens": 3, "epochs": 2, "batch_size": 8,
                          "learning_rate": 0.05, "seed": 4, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["encoder", "causal_lm", "seq2seq", "masked_lm"])
def test_deep_training_moves_only_the_prefix(arch: str, tiny_models: dict[str, str]) -> None:
    w = BackboneWorker(tiny_models[arch], num_threads=1)
    before = w.parameter_digest()
    task = {**TASK, **(LM if arch != "encoder" else {})}
    events = list(train(w, "d", task, DATA, deep_cfg()))
    result = events[-1]
    assert result.kind == "RESULT", result.error
    prompt, kind = read_prompt(result.prompt)
    assert kind == DEEP and list(prompt.shape) == [3, w.bb.deep.width]  # type: ignore[union-attr]
    assert w.parameter_digest() == before, "the backbone changed while training a deep prompt"
    start = init_prompt(w.heads, TaskSpec.from_dict(task), deep_cfg(), None)
    assert not torch.allclose(prompt, start), "training did not move the prefix"
    # "vocab" init: the keys and values the layers compute for sampled words, not noise
    ids = torch.randint(min(1000, 30522 // 10), 6000, (3,), generator=torch.Generator().manual_seed(4)).tolist()
    torch.testing.assert_close(start, activations(w.bb.model, w.bb.deep, ids))  # type: ignore[arg-type]
    # the stored version serves on the worker's classify path with its kind honoured
    scores = classify(w, [("k", DATA[0][0])], {"k": result.prompt}, {"k": task})
    assert len(scores[0]) == 2


@pytest.mark.parametrize("arch", ["encoder", "causal_lm"])
def test_deep_and_input_jobs_co_batched_equal_each_job_alone(arch: str, tiny_models: dict[str, str]) -> None:
    w = BackboneWorker(tiny_models[arch], num_threads=1)
    lm = LM if arch == "causal_lm" else {}
    specs = [
        ("deep", {**TASK, **lm}, DATA, deep_cfg(epochs=3, token_dropout=0.2)),
        ("input", {**TOPIC, **({"label_words": ["vote", "goal"]} if lm else {})}, TOPIC_DATA,
         TrainConfig(num_virtual_tokens=5, epochs=2, batch_size=5, seed=2, learning_rate=0.05)),
        ("deep-text", {**TASK, **lm, "pooling": "text"}, DATA[:30], deep_cfg(num_virtual_tokens=6, seed=9, init="random")),
        ("projected", {**TASK, **lm}, DATA[:40], deep_cfg(seed=5, prefix_projection=8)),
    ]

    def trainer(job, task, data, cfg):  # type: ignore[no-untyped-def]
        return Trainer(job, w.heads, TaskSpec.from_dict(task), data, cfg)

    together = list(train_jobs(w.heads, [trainer(*s) for s in specs]))
    assert sorted(e.job for e in together if e.kind == "RESULT") == ["deep", "deep-text", "input", "projected"]
    for spec in specs:
        alone = list(train_jobs(w.heads, [trainer(*spec)]))
        torch.testing.assert_close(final_prompt(together, spec[0]), final_prompt(alone, spec[0]), atol=2e-5, rtol=1e-4)
        losses = [e.loss for e in together if e.kind == "PROGRESS" and e.job == spec[0]]
        assert losses == pytest.approx([e.loss for e in alone if e.kind == "PROGRESS"], abs=1e-4)


def test_a_job_clips_its_own_gradient(tiny_encoder: str) -> None:
    """`max_grad_norm` bounds the gradient each step applies, over the job's own parameters: co-batched with
    a job that does not clip, it trains as alone. 0 leaves the gradient as computed."""
    w = BackboneWorker(tiny_encoder, num_threads=1)

    def run(max_norm: float, mate: bool = False) -> tuple[list[float], torch.Tensor]:
        t = Trainer("c", w.heads, TaskSpec.from_dict(TASK), DATA[:40],
                    deep_cfg(prefix_projection=8, epochs=1, max_grad_norm=max_norm))
        other = Trainer("other", w.heads, TaskSpec.from_dict(TOPIC), TOPIC_DATA,
                        TrainConfig(num_virtual_tokens=5, epochs=1, batch_size=5, seed=2, learning_rate=0.05))
        norms, step = [], t.opt.step

        def spy(*a, **kw):  # type: ignore[no-untyped-def]
            norms.append(float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in t.parameters()))))
            return step(*a, **kw)

        t.opt.step = spy  # type: ignore[method-assign]
        return norms, final_prompt(list(train_jobs(w.heads, [t, other] if mate else [t])), "c")

    free, free_prompt = run(0.0)
    clipped, clipped_prompt = run(0.01)
    assert len(free) == len(clipped) > 0 and min(free) > 0.01, "the test needs gradients above the bound"
    assert max(clipped) <= 0.01 * (1 + 1e-4), max(clipped)
    assert not torch.allclose(free_prompt, clipped_prompt), "clipping changed nothing"
    _, together = run(0.01, mate=True)  # a norm over both jobs' gradients would clip this one differently
    torch.testing.assert_close(together, clipped_prompt, atol=2e-5, rtol=1e-4)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match="max_grad_norm=.* is invalid: must be in"):
            TrainConfig(max_grad_norm=bad)


@pytest.mark.parametrize("projection", [0, 16])
def test_a_deep_job_resumes_from_its_checkpoint(projection: int, tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    cfg, task = deep_cfg(epochs=3, checkpoint_every=5, prefix_projection=projection), TaskSpec.from_dict(TASK)
    full = list(train_jobs(w.heads, [Trainer("j", w.heads, task, DATA, cfg)]))
    ckpt = next(e for e in full if e.kind == "CHECKPOINT" and e.step == 5)
    resumed = list(train_jobs(w.heads, [Trainer("j", w.heads, task, DATA, cfg, resume=ckpt.checkpoint)]))
    assert next(e for e in resumed if e.kind == "PROGRESS").step > 5
    torch.testing.assert_close(final_prompt(resumed, "j"), final_prompt(full, "j"), atol=1e-6, rtol=1e-5)


def test_a_projected_deep_prompt_starts_at_its_init_and_stores_the_folded_prefix_alone(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    task = TaskSpec.from_dict(TASK)
    cfg = deep_cfg(prefix_projection=16, eval_fraction=0.0, ema_decay=0.0, checkpoint_every=5)
    t = Trainer("p", w.heads, task, DATA, cfg)
    start = init_prompt(w.heads, task, cfg, None)
    torch.testing.assert_close(t.train_prompt(), start)  # the MLP's last layer starts at zero
    assert t.projection is not None and not t.prompt.requires_grad
    assert [id(p) for p in t.opt.param_groups[0]["params"]] == [id(p) for p in t.projection.parameters()]
    before = w.parameter_digest()
    events = list(train_jobs(w.heads, [t]))
    assert events[-1].kind == "RESULT", events[-1].error
    tensors, _ = read_safetensors(events[-1].prompt, "prompt")
    assert list(tensors) == [PROMPT_KEY] and list(tensors[PROMPT_KEY].shape) == [3, w.bb.deep.width]  # type: ignore[union-attr]
    stored = final_prompt(events, "p")
    torch.testing.assert_close(stored, t.projection().detach())  # the network folded into the prefix it computes
    assert not torch.allclose(stored, start), "training did not move the prefix"
    assert w.parameter_digest() == before
    direct = final_prompt(list(train_jobs(w.heads, [Trainer("d", w.heads, task, DATA, replace(cfg, prefix_projection=0))])), "d")
    assert not torch.allclose(stored, direct, atol=1e-3), "the projection changed nothing about training"
    # a checkpoint carries the network and Adam's moments; one without them cannot resume a projected job
    ckpt = next(e.checkpoint for e in events if e.kind == "CHECKPOINT")
    state = TrainState.from_bytes(ckpt, tuple(start.shape))
    assert {"embedding", "down.weight", "up.weight", "up.weight.exp_avg", "up.weight.exp_avg_sq"} <= set(state.projection)
    plain = next(e.checkpoint for e in train_jobs(w.heads, [Trainer("d", w.heads, task, DATA, replace(
        cfg, prefix_projection=0, checkpoint_every=1))]) if e.kind == "CHECKPOINT")
    with pytest.raises(InvalidArgument, match="prefix projection"):
        Trainer("p", w.heads, task, DATA, cfg, resume=plain)
    with pytest.raises(ConfigError, match="prefix_projection=16 is invalid: must be 0 unless prompt_kind is 'deep'"):
        TrainConfig(prefix_projection=16)


def test_a_stored_deep_prompt_starts_a_deep_job_and_not_an_input_one(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    task = TaskSpec.from_dict(TASK)
    stored = torch.randn(2, w.bb.deep.width)  # type: ignore[union-attr]
    start = init_prompt(w.heads, task, deep_cfg(num_virtual_tokens=4), (stored, DEEP))
    torch.testing.assert_close(start[:2], stored)  # the stored rows first, then words' activations
    assert start.shape == (4, w.bb.deep.width)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="init prompt is 'deep' .* this job trains a 'input' prompt"):
        init_prompt(w.heads, task, TrainConfig(num_virtual_tokens=4), (stored, DEEP))
    with pytest.raises(ConfigError, match="init prompt is 'input'"):
        init_prompt(w.heads, task, deep_cfg(), (torch.randn(2, w.bb.hidden_size), INPUT))


@pytest.mark.parametrize("arch", ["causal_lm", "seq2seq"])
def test_generation_with_a_deep_prompt_equals_decoding_without_the_cache(arch: str, tiny_models: dict[str, str]) -> None:
    w = BackboneWorker(tiny_models[arch], num_threads=1)
    bb = w.bb
    torch.manual_seed(11)
    prompt = DeepPrompt(torch.randn(4, bb.deep.width) * 2)  # type: ignore[union-attr]
    text = "the cat sat on"
    got = "".join(p.text for p in generate(bb, prompt, text, max_new_tokens=6))
    ids = tokenize(bb, [text], 64)[0]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(6):  # greedy, recomputing the whole sequence each step: no KV cache at all
            if arch == "causal_lm":
                feats = w.heads.features(build_batch(bb, [ids + out], [prompt]), [TaskSpec.from_dict(TASK)])
                nxt = int(feats[0].argmax())
            else:
                b = build_batch(bb, [ids], [prompt])
                dec = torch.tensor([[bb.decoder_start_id, *out]])
                with prefixes(b.prefixes):
                    logits = bb.model(inputs_embeds=b.inputs_embeds, attention_mask=b.attention_mask,
                                      decoder_input_ids=dec).logits
                nxt = int(logits[0, -1].argmax())
            if nxt == bb.tokenizer.eos_token_id:
                break
            out.append(nxt)
    assert out, "the reference decoded nothing"
    assert got == bb.tokenizer.decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    bare = "".join(p.text for p in generate(bb, torch.zeros(0, bb.hidden_size), text, max_new_tokens=6))
    assert bare != got  # the prefix steers generation (the comparison is not vacuous)
