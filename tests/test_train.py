"""Prompt tuning on tiny random models: only the prompt moves, the backbone stays bit-identical."""

from __future__ import annotations

import pytest
import torch

from bank.codec import decode_prompt
from workers.actor import BackboneWorker
from workers.task import ConfigError, TrainConfig

TASK = {"labels": ["negative", "positive"], "label_texts": ["negative", "positive"]}
DATA = [("good great lovely nice", "positive"), ("bad awful terrible poor", "negative"),
        ("wonderful happy joy", "positive"), ("sad horrible hate", "negative")] * 12


@pytest.mark.parametrize("arch", ["encoder", "causal_lm", "seq2seq", "masked_lm"])
def test_training_changes_only_the_prompt(arch: str, tiny_models: dict[str, str]) -> None:
    worker = BackboneWorker(tiny_models[arch], num_threads=1)
    before = worker.parameter_digest()
    assert all(not p.requires_grad for p in worker.bb.model.parameters())
    cfg = TrainConfig(num_virtual_tokens=4, epochs=3, learning_rate=0.1, batch_size=8, init="random", seed=3,
                      progress_every=1)
    events = list(worker.train("j1", TASK, DATA, cfg.to_dict()))
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "RESULT" and "PROGRESS" in kinds and "EVAL" in kinds
    steps = [e["step"] for e in events if e["kind"] == "PROGRESS"]
    assert steps == sorted(steps) and steps[-1] == events[-1]["total_steps"]
    result = events[-1]
    prompt = decode_prompt(result["prompt"])
    assert prompt.shape == (4, worker.bb.hidden_size)
    assert worker.parameter_digest() == before, "the backbone changed during prompt tuning"
    # the trained prompt is not the init: re-derive the init with the same seed and compare
    from workers.task import TaskSpec
    from workers.train import init_prompt

    init = init_prompt(worker.heads, TaskSpec.from_dict(TASK), cfg, None)
    assert not torch.allclose(prompt, init), "training did not move the prompt"
    first = next(e for e in events if e["kind"] == "PROGRESS")["loss"]
    assert result["metrics"]["steps"] == result["total_steps"]
    assert 0.0 <= result["metrics"]["eval_accuracy"] <= 1.0 and first > 0


def test_training_is_reproducible_with_a_seed(tiny_encoder: str) -> None:
    worker = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=3, epochs=1, batch_size=8, seed=7).to_dict()
    a = list(worker.train("a", TASK, DATA, cfg))[-1]["prompt"]
    b = list(worker.train("b", TASK, DATA, cfg))[-1]["prompt"]
    assert a == b


def test_cancel_stops_at_the_next_step(tiny_encoder: str) -> None:
    worker = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = TrainConfig(num_virtual_tokens=2, epochs=50, batch_size=4, progress_every=1).to_dict()
    events = []
    for ev in worker.train("c", TASK, DATA, cfg):
        events.append(ev)
        if ev["kind"] == "PROGRESS" and ev["step"] == 2:
            worker.cancel("c")
    assert events[-1]["kind"] == "CANCELLED" and events[-1]["step"] == 2


def test_unknown_labels_are_refused(tiny_encoder: str) -> None:
    worker = BackboneWorker(tiny_encoder, num_threads=1)
    with pytest.raises(ConfigError, match="not among the task's labels"):
        list(worker.train("x", TASK, DATA + [("meh", "neutral")], TrainConfig().to_dict()))


@pytest.mark.parametrize("field,value", [("learning_rate", 0.0), ("num_virtual_tokens", 0), ("init", "bogus")])
def test_train_config_names_the_bad_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})
