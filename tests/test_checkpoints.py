"""What a training checkpoint holds, and that each resumes its run exactly: a prompt trained directly keeps
its Adam moments, a deep prompt trained through its projection keeps the network and that network's moments but
no prompt-shaped ones, a run's last checkpoint keeps only what its result is made of (and resuming it makes the
result without another step), and checkpoints in the earlier, fuller format still resume the same run."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bank.codec import read_safetensors
from promptbank_domain.task import TaskSpec
from promptbank_domain.train_config import TrainConfig
from promptbank_kinds.projection import MOMENTS
from tests.test_deep_training import deep_cfg
from tests.test_train import DATA, TASK, final_prompt
from workers.actor import BackboneWorker
from workers.checkpoint import PROJECTION, TrainState
from workers.protocol import TrainEvent
from workers.train import Trainer, train_jobs

NETWORK = ("embedding", "down.weight", "down.bias", "up.weight", "up.bias")  # the projection's parameters


def run(w: BackboneWorker, cfg: TrainConfig, resume: bytes | None = None) -> list[TrainEvent]:
    return list(train_jobs(w.heads, [Trainer("j", w.heads, TaskSpec.from_dict(TASK), DATA, cfg, resume=resume)]))


def names(data: bytes) -> set[str]:
    tensors, _ = read_safetensors(data, "checkpoint")
    return set(tensors)


@pytest.mark.parametrize("projection", [0, 16])
def test_a_deep_checkpoint_holds_what_resuming_needs_and_resumes_exactly(projection: int, tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = deep_cfg(epochs=3, checkpoint_every=5, prefix_projection=projection)
    full = run(w, cfg)
    result = full[-1]
    assert result.kind == "RESULT", result.error
    mid = next(e.checkpoint for e in full if e.kind == "CHECKPOINT" and e.step == 5)
    last = [e for e in full if e.kind == "CHECKPOINT"][-1]
    assert last.step == result.step == result.total_steps
    shape = tuple(final_prompt(full, "j").shape)
    kept = {"best_prompt"} if TrainState.from_bytes(mid, shape).kept else set()  # once an evaluation is kept
    rng_and_average = {"torch_rng", "noise_rng", "ema"}
    if projection:  # the network and its moments; the prompt is what it computes, the prompt's moments unused
        network = {PROJECTION + k for k in ("base", *NETWORK)} | {f"{PROJECTION}{k}.{m}" for k in NETWORK for m in MOMENTS}
        assert names(mid) == rng_and_average | kept | network
    else:
        assert names(mid) == rng_and_average | kept | {"prompt", "exp_avg", "exp_avg_sq"}
    assert names(last.checkpoint) == rng_and_average | {"prompt", "best_prompt"}  # the result's makings alone

    resumed = run(w, cfg, resume=mid)
    assert next(e for e in resumed if e.kind == "PROGRESS").step > 5
    assert torch.equal(final_prompt(resumed, "j"), final_prompt(full, "j")), "a resumed run ended elsewhere"
    assert [e.metrics for e in resumed if e.kind == "EVAL"] == [e.metrics for e in full if e.kind == "EVAL" and e.step > 5]
    at_end = run(w, cfg, resume=last.checkpoint)  # its result, and no step past the end
    assert [e.kind for e in at_end] == ["RESULT"] and at_end[0].metrics["steps"] == result.total_steps
    assert torch.equal(final_prompt(at_end, "j"), final_prompt(full, "j"))


def test_a_projected_checkpoint_in_the_earlier_format_still_resumes_the_same_run(tiny_encoder: str) -> None:
    """Before, a projected job's checkpoint also carried its prompt and zero prompt-shaped moments, and a
    checkpoint carried the kept prompt and the average's accumulator always."""
    w = BackboneWorker(tiny_encoder, num_threads=1)
    cfg = deep_cfg(epochs=3, checkpoint_every=5, prefix_projection=16, ema_decay=0.0)
    full = run(w, cfg)
    mid = next(e.checkpoint for e in full if e.kind == "CHECKPOINT" and e.step == 5)
    shape = tuple(final_prompt(full, "j").shape)
    assert "ema" not in names(mid), "without averaging the accumulator is the prompt: not stored"
    t = Trainer("j", w.heads, TaskSpec.from_dict(TASK), DATA, cfg, resume=mid)
    st = TrainState.from_bytes(mid, shape)
    prompt = t.prompt.detach().clone()
    earlier = replace(st, prompt=prompt, ema=prompt.clone(), exp_avg=torch.zeros(shape), exp_avg_sq=torch.zeros(shape),
                      kept_prompt=st.kept_prompt if st.kept_prompt is not None else prompt.clone()).to_bytes()
    assert len(earlier) > len(mid)
    assert torch.equal(final_prompt(run(w, cfg, resume=earlier), "j"), final_prompt(full, "j"))
