"""A prompt run that collapses (the model scores every held-out row alike, eval loss ln(labels)) is caught while
it trains: its evaluations say so, two in a row end the run, and the job keeps the last sound evaluation's
prompt, or fails naming the collapse when there was none: a collapsed prompt is never published."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from promptbank_domain.task import TaskSpec
from tests.test_deep_training import deep_cfg
from tests.test_train import DATA, TASK
from tests.workers_util import classify, train
from workers.actor import BackboneWorker
from workers.checkpoint import TrainState
from workers.protocol import EventKind
from workers.resume import snapshot
from workers.schedule import COLLAPSE_EVALS, KeepRule, probability_spread
from workers.train import Trainer, train_jobs

ROWS = DATA * 4  # 64 rows: 16 held out, so an evaluation sees many different texts
# A deep prompt through a small projection collapses on the tiny encoder at a learning rate far above its
# default: from the first evaluation when it starts there (EARLY), after sound evaluations when a run that
# trained at a sane rate resumes at that one (SOUND, then LATE). The trajectories are fixed by the kernels that
# tests/conftest.py pins (DNNL_MAX_CPU_ISA).
BASE = {"prefix_projection": 64, "ema_decay": 0.0, "eval_fraction": 0.25, "warmup_fraction": 0.0}
SOUND = {**BASE, "learning_rate": 1.0, "epochs": 3}
LATE = {**BASE, "learning_rate": 10.0, "epochs": 8}
EARLY = {**BASE, "learning_rate": 10.0, "epochs": 6}


def test_the_spread_is_zero_only_when_every_row_scores_alike() -> None:
    same = torch.tensor([[3.0, -1.0]] * 5)
    assert probability_spread(same) < 1e-6
    assert probability_spread(same + 7.0) < 1e-6  # a shift of every logit changes no probability
    assert probability_spread(torch.tensor([[3.0, -1.0], [-1.0, 3.0]])) > 0.4  # 0.98 vs the mean 0.5


def test_collapsed_evaluations_are_never_kept_and_two_in_a_row_stop_the_run() -> None:
    rule = KeepRule("eval_loss", patience=100)
    good = {"eval_loss": 0.5, "eval_loss_se": 0.01}
    assert rule.observe(good)
    flat = {"eval_loss": math.log(2), "eval_loss_se": 0.0, "collapsed": 1.0}
    assert not rule.observe(flat) and rule.kept is good and rule.best is good
    assert not rule.stopped_early, "one collapsed evaluation can be a transient"
    assert rule.observe({"eval_loss": 0.45, "eval_loss_se": 0.01}) and rule.collapsed_evals == 0
    for _ in range(COLLAPSE_EVALS):
        rule.observe(flat)
    assert rule.collapsed and rule.stopped_early and rule.kept["eval_loss"] == 0.45


def test_a_run_that_collapses_late_stops_and_keeps_its_last_sound_prompt(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    t = Trainer("late", w.heads, TaskSpec.from_dict(TASK), ROWS, deep_cfg(**SOUND))
    sound = list(train_jobs(w.heads, [t]))
    assert not any(e.metrics.get("collapsed") for e in sound if e.kind == EventKind.EVAL)
    assert t.projection is not None
    # the state the sound run ended in, to go on at another rate: its network and Adam moments included (its
    # last checkpoint leaves them out, as resuming that only makes the result)
    checkpoint = replace(snapshot(t), prompt=None, projection=t.projection.tensors(t.opt)).to_bytes()
    events = list(train(w, "late", TASK, ROWS, deep_cfg(**LATE), resume=checkpoint))
    evals = [e for e in events if e.kind == EventKind.EVAL]
    flags = [bool(e.metrics.get("collapsed")) for e in evals]
    assert flags == [False] + [True] * COLLAPSE_EVALS, flags
    assert all(abs(e.metrics["eval_loss"] - math.log(2)) < 1e-3 for e in evals if e.metrics.get("collapsed"))
    result = events[-1]
    assert result.kind == EventKind.RESULT, result.error
    assert result.step == evals[-1].step < result.total_steps, "the run went on after it collapsed"
    assert result.metrics["collapsed_evals"] == COLLAPSE_EVALS and result.metrics["stopped_early"] == 1.0
    before = [e.metrics["eval_loss"] for e in sound + evals if e.kind == EventKind.EVAL and not e.metrics.get("collapsed")]
    assert result.metrics["eval_loss"] in before and result.metrics["eval_loss"] < math.log(2) - 0.01
    # the published prompt is not collapsed: served, it still scores the rows differently
    scores = torch.tensor(classify(w, [("k", text) for text, _ in DATA], {"k": result.prompt}, {"k": TASK}))
    assert float((scores - scores.mean(0)).abs().max()) > 1e-3, scores


def test_a_run_collapsed_from_the_start_fails_naming_the_collapse(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    events = list(train(w, "early", TASK, ROWS, deep_cfg(**EARLY)))
    evals = [e for e in events if e.kind == EventKind.EVAL]
    assert len(evals) == COLLAPSE_EVALS and all(e.metrics.get("collapsed") for e in evals)
    last = events[-1]
    assert last.kind == EventKind.FAILED and not last.prompt
    assert "training collapsed" in last.error and "max_grad_norm" in last.error, last.error
    assert f"step {evals[-1].step}" in last.error


def test_the_collapse_count_survives_a_checkpoint(tiny_encoder: str) -> None:
    w = BackboneWorker(tiny_encoder, num_threads=1)
    events = list(train(w, "early", TASK, ROWS, deep_cfg(**EARLY)))
    ckpt = [e for e in events if e.kind == EventKind.CHECKPOINT][-1]
    state = TrainState.from_bytes(ckpt.checkpoint, (3, w.bb.deep.width))  # type: ignore[union-attr]
    assert state.collapsed_evals == COLLAPSE_EVALS
    resumed = list(train(w, "early", TASK, ROWS, deep_cfg(**EARLY), resume=ckpt.checkpoint))
    assert resumed[-1].kind == EventKind.FAILED and "training collapsed" in resumed[-1].error


def test_a_backbone_that_never_told_the_rows_apart_is_not_a_collapse(tiny_models: dict[str, str]) -> None:
    """The tiny masked LM (narrow random init) scores every row nearly alike whatever the prompt: its runs must
    train and publish as before, not fail as collapsed."""
    w = BackboneWorker(tiny_models["masked_lm"], num_threads=1)
    task = {**TASK, "label_words": ["bad", "good"]}
    events = list(train(w, "m", task, ROWS, deep_cfg(prompt_kind="input", learning_rate=0.1, epochs=2,
                                                     eval_fraction=0.25)))
    assert events[-1].kind == EventKind.RESULT, events[-1].error
    assert not any(e.metrics.get("collapsed") for e in events if e.kind == EventKind.EVAL)
