"""Prompt tuning on tiny random models: only the prompt moves, the backbone stays bit-identical."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from bank.codec import decode_prompt
from promptbank_api.errors import InvalidArgument
from promptbank_domain.task import ConfigError, TaskSpec
from promptbank_domain.train_config import TrainConfig
from tests.workers_util import classify, train
from workers import grouping
from workers.actor import BackboneWorker
from workers.protocol import CancelRequest, TrainEvent, TrainRequest
from workers.train import Trainer, train_jobs

TASK = {"labels": ["negative", "positive"], "label_texts": ["negative", "positive"]}
DATA = [("good great lovely nice", "positive"), ("bad awful terrible poor", "negative"),
        ("wonderful happy joy", "positive"), ("sad horrible hate", "negative")] * 12


@pytest.fixture(scope="module")
def wide_masked_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shared tiny masked LM (init std 0.02) scores its mask almost regardless of the prompt, so its loss
    falls as much under gradient ascent as under descent; with the other builders' wide init it reads the prompt."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from coordinator.config import packaged_minilm

    path = tmp_path_factory.mktemp("wide-mlm")
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256, architectures=["BertForMaskedLM"],
                     initializer_range=0.2)
    BertForMaskedLM(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(packaged_minilm()).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("arch", ["encoder", "causal_lm", "seq2seq", "masked_lm"])
def test_training_changes_only_the_prompt(arch: str, tiny_models: dict[str, str], request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue("wide_masked_lm") if arch == "masked_lm" else tiny_models[arch]
    worker = BackboneWorker(path, num_threads=1)
    before = worker.parameter_digest()
    assert all(not p.requires_grad for p in worker.bb.model.parameters())
    cfg = TrainConfig(num_virtual_tokens=4, epochs=3, learning_rate=0.1, batch_size=8, init="random", seed=3,
                      progress_every=1)
    events = list(train(worker, "j1", TASK, DATA, cfg.to_dict()))
    kinds = [e.kind for e in events]
    assert kinds[-1] == "RESULT" and "PROGRESS" in kinds and "EVAL" in kinds
    steps = [e.step for e in events if e.kind == "PROGRESS"]
    assert steps == sorted(steps) and steps[-1] == events[-1].total_steps
    result = events[-1]
    prompt = decode_prompt(result.prompt)
    assert prompt.shape == (4, worker.bb.hidden_size)
    assert worker.parameter_digest() == before, "the backbone changed during prompt tuning"
    # the trained prompt is not the init: re-derive the init with the same seed and compare
    from promptbank_domain.task import TaskSpec
    from workers.prepare import init_prompt

    init = init_prompt(worker.heads, TaskSpec.from_dict(TASK), cfg, None)
    assert not torch.allclose(prompt, init), "training did not move the prompt"
    assert result.metrics["steps"] == result.total_steps
    by_epoch: dict[int, list[float]] = {}
    for e in events:
        if e.kind == "PROGRESS" and e.loss is not None:
            by_epoch.setdefault(e.epoch, []).append(e.loss)
    means = [sum(v) / len(v) for _, v in sorted(by_epoch.items())]
    assert len(means) == 3 and means[-1] < means[0], f"the loss did not fall: mean per epoch {means}"


def test_training_is_reproducible_with_a_seed(tiny_encoder: str) -> None:
    worker = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=3, epochs=1, batch_size=8, seed=7).to_dict()
    a = list(train(worker, "a", TASK, DATA, cfg))[-1].prompt
    b = list(train(worker, "b", TASK, DATA, cfg))[-1].prompt
    assert a == b


def test_cancel_stops_at_the_next_step(tiny_encoder: str) -> None:
    worker = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=2, epochs=50, batch_size=4, progress_every=1).to_dict()
    events = []
    for ev in train(worker, "c", TASK, DATA, cfg):
        events.append(ev)
        if ev.kind == "PROGRESS" and ev.step == 2:
            worker.cancel(CancelRequest("c"))
    assert events[-1].kind == "CANCELLED" and events[-1].step == 2
    assert events[-2].kind == "CHECKPOINT" and events[-2].step == 2  # the last state is kept


def test_unknown_labels_fail_that_job_only(tiny_encoder: str) -> None:
    worker = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=2, epochs=1, batch_size=8).to_dict()
    task, config = TaskSpec.from_dict(TASK), TrainConfig.from_dict(cfg)
    jobs = [TrainRequest("bad", task, config, DATA + [("meh", "neutral")]), TrainRequest("good", task, config, DATA)]
    events = list(worker.train_group(jobs))
    assert events[0].kind == "FAILED" and events[0].job == "bad" and "not among the task's labels" in events[0].error
    assert events[-1].kind == "RESULT" and events[-1].job == "good"
    with pytest.raises(ConfigError, match="not among"):
        Trainer("x", worker.heads, TaskSpec.from_dict(TASK), [("meh", "neutral")] * 4, TrainConfig())


@pytest.mark.parametrize("field,value", [("learning_rate", 0.0), ("num_virtual_tokens", 0), ("init", "bogus"),
                                         ("ema_decay", 1.0), ("ema_decay", -0.1)])
def test_train_config_names_the_bad_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


TOPIC = {"labels": ["politics", "sports"], "label_texts": ["politics", "sports"]}
TOPIC_DATA = [("the match ended two nil", "sports"), ("parliament passed the bill", "politics"),
              ("the striker scored twice", "sports"), ("the senator gave a speech", "politics")] * 10


def final_prompt(events: list[TrainEvent], job: str) -> torch.Tensor:
    return decode_prompt(next(e for e in events if e.kind == "RESULT" and e.job == job).prompt)


# fp32 co-batching is exact up to float summation order; bf16 forwards round per GEMM shape, so a job's
# result then equals training it alone only to bf16 precision.
TOLERANCE = {"fp32": {"atol": 2e-5, "rtol": 1e-4, "loss": 1e-4}, "bf16": {"atol": 2e-2, "rtol": 5e-2, "loss": 2e-2}}


@pytest.mark.parametrize(("arch", "precision", "forward_cost"),
                         [("encoder", "fp32", None), ("causal_lm", "fp32", None), ("encoder", "bf16", None),
                          ("encoder", "fp32", 0)])  # 0: every distinct row length gets its own forward
def test_co_batched_jobs_equal_each_job_trained_alone(
    arch: str, precision: str, forward_cost: int | None, tiny_models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if forward_cost is not None:
        monkeypatch.setitem(grouping.FORWARD_COST, "cpu", forward_cost)
    w = BackboneWorker(tiny_models[arch], num_threads=1)
    lm = {"label_words": ["bad", "good"]} if arch == "causal_lm" else {}
    p = {"precision": precision}
    specs = [  # every pooling; different prompt lengths, batch sizes, seeds, inits; input noise on (the default)
        ("a", {**TASK, **lm}, DATA, TrainConfig(num_virtual_tokens=3, epochs=3, batch_size=8, seed=1, learning_rate=0.1,
                                                token_dropout=0.3, **p)),
        ("b", {**TOPIC, **({"label_words": ["vote", "goal"]} if lm else {}), "pooling": "text"}, TOPIC_DATA,
         TrainConfig(num_virtual_tokens=6, epochs=2, batch_size=5, seed=2, learning_rate=0.05, init="random", **p)),
        ("c", {**TASK, **lm, "pooling": "prompt"}, DATA[:30],
         TrainConfig(num_virtual_tokens=2, epochs=4, batch_size=4, seed=3, input_noise=20.0, **p)),
    ]
    tol = TOLERANCE[precision]

    def trainer(job, task, data, cfg):  # type: ignore[no-untyped-def]
        return Trainer(job, w.heads, TaskSpec.from_dict(task), data, cfg)

    together = list(train_jobs(w.heads, [trainer(*s) for s in specs]))
    assert sorted(e.job for e in together if e.kind == "RESULT") == ["a", "b", "c"]
    for spec in specs:
        alone = list(train_jobs(w.heads, [trainer(*spec)]))
        torch.testing.assert_close(final_prompt(together, spec[0]), final_prompt(alone, spec[0]),
                                   atol=tol["atol"], rtol=tol["rtol"])
        losses_t = [e.loss for e in together if e.kind == "PROGRESS" and e.job == spec[0]]
        losses_a = [e.loss for e in alone if e.kind == "PROGRESS"]
        assert losses_t == pytest.approx(losses_a, abs=tol["loss"])


def test_input_noise_is_seeded_per_job_bounded_and_off_at_zero(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    task = TaskSpec.from_dict(TASK)

    def trainer(**kw: object) -> Trainer:
        return Trainer("j", w.heads, task, DATA, TrainConfig(num_virtual_tokens=3, epochs=2, seed=6, **kw))

    t = trainer()
    assert t.cfg.input_noise == 5.0  # on by default
    rows = t.tr_ids[:4]
    draws = t.input_noise(rows)
    h = w.bb.hidden_size
    for r, d in zip(rows, draws, strict=True):
        bound = 5.0 / ((len(r) + 3) * h) ** 0.5
        assert d is not None and d.shape == (len(r), h) and 0.8 * bound < float(d.abs().max()) <= bound
    assert all(torch.equal(a, b) for a, b in zip(draws, trainer().input_noise(rows), strict=True))  # seeded
    assert not torch.equal(draws[0], t.input_noise(rows[:1])[0])  # each step draws afresh
    assert trainer(input_noise=0.0).input_noise(rows) == [None] * 4
    noisy = final_prompt(list(train_jobs(w.heads, [trainer(learning_rate=0.1)])), "j")
    clean = final_prompt(list(train_jobs(w.heads, [trainer(learning_rate=0.1, input_noise=0.0)])), "j")
    assert not torch.allclose(noisy, clean)  # the noise reaches the training forwards
    with pytest.raises(ConfigError, match="input_noise"):
        TrainConfig(input_noise=-1.0)


def test_token_dropout_drops_text_tokens_per_epoch_and_row_and_keeps_special_ones(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    data = [(" ".join(f"w{k}" for k in range(40)), "positive"), ("bad", "negative")] * 20
    special = set(w.bb.tokenizer.all_special_ids)

    def trainer(**kw: object) -> Trainer:
        return Trainer("j", w.heads, TaskSpec.from_dict(TASK), data, TrainConfig(num_virtual_tokens=2, seed=5, **kw))

    t = trainer(token_dropout=0.3)
    assert trainer().cfg.token_dropout == 0.0  # off by default
    i = next(k for k, r in enumerate(t.tr_ids) if len(r) > 20)
    row = t.tr_ids[i]
    text = [x for x in row if x not in special]
    dropped = t.token_dropout(row, 0, i)
    assert [x for x in row if x in special] == [x for x in dropped if x in special]  # [CLS] ... [SEP] stay
    kept = [x for x in dropped if x not in special]
    assert 0.4 * len(text) < len(kept) < 0.95 * len(text) and all(x in text for x in kept)
    assert dropped == trainer(token_dropout=0.3).token_dropout(row, 0, i)  # a function of (seed, epoch, row)
    assert dropped != t.token_dropout(row, 1, i) and dropped != t.token_dropout(row, 0, i + 1)
    assert trainer(token_dropout=0.0).token_dropout(row, 0, i) == row
    short = next(r for r in t.tr_ids if len([x for x in r if x not in special]) == 1)
    assert trainer(token_dropout=0.99).token_dropout(short, 0, 0) == short  # never an empty text
    ids, _ = t.next_batch()  # training batches are the dropped rows
    assert ids == [t.token_dropout(t.tr_ids[k], 0, k) for k in t._batches(0)[0]]
    with pytest.raises(ConfigError, match="token_dropout"):
        TrainConfig(token_dropout=1.0)


@pytest.mark.parametrize("decay", [0.9, 0.0])
def test_evaluations_score_and_the_job_keeps_the_moving_average_of_the_prompt(tiny_encoder: str, decay: float) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=3, epochs=5, batch_size=8, seed=4, learning_rate=0.3, progress_every=1,
                      patience=10, eval_fraction=0.25, ema_decay=decay)
    t = Trainer("j", w.heads, TaskSpec.from_dict(TASK), DATA, cfg)
    raw, avg = [t.prompt.detach().clone()], [t.average.clone()]
    events = []
    for e in train_jobs(w.heads, [t]):
        events.append(e)
        if e.kind == "PROGRESS":
            assert e.step == len(raw)
            raw.append(t.prompt.detach().clone())
            avg.append(t.average.clone())
    torch.testing.assert_close(avg[0], raw[0])  # before any step: the init
    ema = torch.zeros_like(raw[0])
    for step in range(1, len(raw)):  # the EMA recurrence from zero, bias-corrected: a weighted mean of the steps
        ema = decay * ema + (1 - decay) * raw[step]
        torch.testing.assert_close(avg[step], ema / (1 - decay**step), atol=1e-6, rtol=1e-5)
    assert torch.equal(avg[-1], raw[-1]) == (decay == 0.0)  # 0: the average is the prompt itself
    evals = [e for e in events if e.kind == "EVAL"]
    kept = evals[kept_index([e.metrics for e in evals], "eval_loss")]
    assert torch.equal(final_prompt(events, "j"), avg[kept.step].cpu())  # kept: the average it scored


def test_resuming_from_a_checkpoint_continues_the_same_run(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=3, epochs=4, batch_size=8, seed=5, learning_rate=0.1, checkpoint_every=7,
                      token_dropout=0.2)
    task = TaskSpec.from_dict(TASK)
    full = list(train_jobs(w.heads, [Trainer("j", w.heads, task, DATA, cfg)]))
    ckpt = next(e for e in full if e.kind == "CHECKPOINT" and e.step == 7)
    resumed = list(train_jobs(w.heads, [Trainer("j", w.heads, task, DATA, cfg, resume=ckpt.checkpoint)]))
    assert next(e for e in resumed if e.kind == "PROGRESS").step > 7
    torch.testing.assert_close(final_prompt(resumed, "j"), final_prompt(full, "j"), atol=1e-6, rtol=1e-5)
    assert [e.metrics for e in resumed if e.kind == "EVAL"] == [e.metrics for e in full if e.kind == "EVAL"
                                                                      and e.step > 7]
    at_eval = next(e for i, e in enumerate(full) if e.kind == "CHECKPOINT" and full[i - 1].kind == "EVAL"
                   and e.step > 7)  # the kept and the best evaluations so far come back as they were
    so_far = [e.metrics for e in full if e.kind == "EVAL" and e.step <= at_eval.step]
    t = Trainer("j", w.heads, task, DATA, cfg, resume=at_eval.checkpoint)
    assert len(so_far) >= 2 and t.kept == so_far[kept_index(so_far, "eval_loss")]
    assert t.best == min(so_far, key=lambda m: m["eval_loss"])
    with pytest.raises(InvalidArgument, match="safetensors"):
        Trainer("j", w.heads, task, DATA, cfg, resume=b"\x80\x04garbage")
    bad = {**st_load(ckpt.checkpoint), "noise_rng": torch.zeros(3, dtype=torch.uint8)}
    with pytest.raises(InvalidArgument, match="RNG state"):
        Trainer("j", w.heads, task, DATA, cfg, resume=st_save(bad, metadata=st_metadata(ckpt.checkpoint)))
    bad = {**st_load(ckpt.checkpoint), "ema": torch.zeros(2, 3)}
    with pytest.raises(InvalidArgument, match="ema shape"):
        Trainer("j", w.heads, task, DATA, cfg, resume=st_save(bad, metadata=st_metadata(ckpt.checkpoint)))
    bad = {k: v for k, v in st_load(ckpt.checkpoint).items() if k != "best_prompt"}
    with pytest.raises(InvalidArgument, match="best_prompt"):
        Trainer("j", w.heads, task, DATA, cfg, resume=st_save(bad, metadata=st_metadata(ckpt.checkpoint)))
    old = {k: v for k, v in st_load(ckpt.checkpoint).items() if k != "ema"}  # from before averaging
    t = Trainer("j", w.heads, task, DATA, cfg, resume=st_save(old, metadata=st_metadata(ckpt.checkpoint)))
    torch.testing.assert_close(t.average, t.prompt.detach())  # the average starts at the checkpoint's prompt


def st_metadata(data: bytes) -> dict[str, str]:
    return json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]


def test_early_stopping_ends_a_run_that_stops_improving(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=2, epochs=10, batch_size=8, learning_rate=1e-9, patience=1,
                      select_on="eval_accuracy")  # a prompt that does not move: the same accuracy every time
    events = list(train_jobs(w.heads, [Trainer("j", w.heads, TaskSpec.from_dict(TASK), DATA, cfg)]))
    evals = [e for e in events if e.kind == "EVAL"]
    assert len(evals) == 2 and evals[-1].stopped_early
    result = events[-1]
    assert result.kind == "RESULT" and result.metrics["stopped_early"] == 1.0
    assert result.step < result.total_steps


def test_training_without_an_eval_split(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    events = list(train(w, "n", TASK, DATA, TrainConfig(num_virtual_tokens=2, epochs=1, eval_fraction=0.0).to_dict()))
    assert events[-1].kind == "RESULT" and events[-1].metrics["eval_examples"] == 0
    assert not [e for e in events if e.kind == "EVAL"]


@pytest.mark.parametrize("arch", ["encoder", "causal_lm"])
def test_training_after_classifying_the_same_task(arch: str, tiny_models: dict[str, str]) -> None:
    """Label tensors first built under inference_mode (classify) must still serve training afterwards."""
    from bank.codec import encode_prompt

    w = BackboneWorker(tiny_models[arch], num_threads=1)
    task = {**TASK, "label_words": ["bad", "good"]}
    classify(w, [("k", "some text")], {"k": encode_prompt(torch.randn(2, w.bb.hidden_size))}, {"k": task})
    events = list(train(w, "t", task, DATA, TrainConfig(num_virtual_tokens=2, epochs=1, batch_size=8).to_dict()))
    assert events[-1].kind == "RESULT"


def test_an_epoch_covers_every_row_once_in_length_sorted_batches(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    data = [(" ".join(["word"] * (1 + (i * 7) % 23)), ("negative", "positive")[i % 2]) for i in range(200)]
    cfg = TrainConfig(num_virtual_tokens=2, batch_size=4, eval_fraction=0.0, seed=3)
    t = Trainer("j", w.heads, TaskSpec.from_dict(TASK), data, cfg)
    epoch0, epoch1 = t._batches(0), t._batches(1)
    assert sorted(i for b in epoch0 for i in b) == list(range(200)) and len(epoch0) == t.steps_per_epoch
    assert epoch0 != epoch1 and Trainer("j", w.heads, TaskSpec.from_dict(TASK), data, cfg)._batches(0) == epoch0

    def padding(batches: list[list[int]]) -> int:
        return sum(max(len(t.tr_ids[i]) for i in b) * len(b) - sum(len(t.tr_ids[i]) for i in b) for b in batches)

    shuffled = list(range(200))
    random.Random(0).shuffle(shuffled)
    unsorted = [shuffled[k : k + 4] for k in range(0, 200, 4)]  # batches of no particular length order
    assert padding(epoch0) < padding(unsorted) / 3


def test_precision_is_per_job_and_jobs_of_both_precisions_train_together(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    task = TaskSpec.from_dict(TASK)

    def trainer(job: str, precision: str) -> Trainer:
        cfg = TrainConfig(num_virtual_tokens=3, epochs=2, batch_size=8, seed=4, learning_rate=0.1, precision=precision)
        return Trainer(job, w.heads, task, DATA, cfg)

    assert trainer("x", "bf16").autocast == torch.bfloat16 and trainer("x", "fp32").autocast is None
    together = list(train_jobs(w.heads, [trainer("h", "bf16"), trainer("f", "fp32")]))
    half, full = final_prompt(together, "h"), final_prompt(together, "f")
    assert not torch.allclose(half, full)  # bf16 really ran: the same job in fp32 ends elsewhere
    for job, precision, got in (("h", "bf16", half), ("f", "fp32", full)):
        alone = list(train_jobs(w.heads, [trainer(job, precision)]))
        torch.testing.assert_close(got, final_prompt(alone, job), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("select_on", ["eval_loss", "eval_accuracy"])
def test_the_kept_prompt_follows_the_one_se_rule_on_the_chosen_metric(tiny_encoder: str, select_on: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=3, epochs=6, batch_size=8, learning_rate=0.3, patience=10, select_on=select_on,
                      eval_fraction=0.25, seed=2)
    events = list(train_jobs(w.heads, [Trainer("j", w.heads, TaskSpec.from_dict(TASK), DATA, cfg)]))
    evals = [e.metrics for e in events if e.kind == "EVAL"]
    assert len(evals) == 6
    kept = evals[kept_index(evals, select_on)]
    result = events[-1].metrics
    assert result["eval_loss"] == kept["eval_loss"] and result["eval_accuracy"] == kept["eval_accuracy"]


def kept_index(evals: list[dict[str, float]], key: str) -> int:
    """The one-standard-error rule, written out: the latest evaluation within the best-so-far's SE of it."""
    sign = -1.0 if key == "eval_loss" else 1.0
    best, kept = evals[0], 0
    for i, m in enumerate(evals[1:], 1):
        if sign * m[key] > sign * best[key]:
            best, kept = m, i
        elif sign * (best[key] - m[key]) <= best[f"{key}_se"]:
            kept = i
    return kept


@pytest.mark.parametrize("key", ["eval_loss", "eval_accuracy"])
def test_the_kept_prompt_is_the_latest_within_one_standard_error_of_the_best(tiny_encoder: str, key: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    t = Trainer("j", w.heads, TaskSpec.from_dict(TASK), DATA, TrainConfig(num_virtual_tokens=2, patience=3,
                                                                           select_on=key))
    worse = 1.0 if key == "eval_loss" else -1.0  # the direction in which the metric gets worse
    values = [(0.50, 0.05), (0.53, 0.04), (0.58, 0.05), (0.45, 0.01), (0.47, 0.1), (0.47, 0.1), (0.471, 0.1)]
    kept, stale = [], []
    for k, (v, se) in enumerate(values):
        value = 0.5 + worse * (v - 0.5)
        t._select({key: value, f"{key}_se": se, "tag": float(k)}, torch.full((2, 4), float(k)))
        kept.append(int(t.kept["tag"]))
        stale.append(t.keep.stale_evals)
        assert torch.equal(t.kept_prompt, torch.full((2, 4), float(kept[-1])))
    # 0.53 is within the best's SE (0.05) of 0.50: kept; 0.58 is not; 0.45 is a new best (SE 0.01), so 0.47 is
    # out of reach; and patience counts evaluations without a new best, whatever is kept
    assert kept == [0, 1, 1, 3, 3, 3, 3]
    assert stale == [0, 1, 2, 0, 1, 2, 3] and t.stopped_early
    t = Trainer("j", w.heads, TaskSpec.from_dict(TASK), DATA, TrainConfig(num_virtual_tokens=2, select_on=key))
    for k, v in enumerate([0.50, 0.52]):  # a later evaluation within the SE is kept, with its own metrics
        t._select({key: 0.5 + worse * (v - 0.5), f"{key}_se": 0.05, "tag": float(k)}, torch.zeros(2, 4))
    assert t.kept["tag"] == 1.0 and t.best["tag"] == 0.0
