"""Quality on real parts: the packaged all-MiniLM-L6-v2 and real labelled tweets (no downloads)."""

from __future__ import annotations

from collections import Counter

import pytest

from coordinator.config import packaged_minilm
from promptbank.data import tweet_tasks
from promptbank_domain.task import TaskSpec
from promptbank_domain.train_config import TrainConfig
from tests.workers_util import train
from workers.actor import BackboneWorker
from workers.protocol import ClassifyBatch

TASK = {"labels": ["negative", "positive"], "label_texts": ["negative", "positive"]}


@pytest.fixture(scope="module")
def minilm() -> BackboneWorker:
    return BackboneWorker(packaged_minilm())


def test_a_short_prompt_run_beats_the_majority_rate_on_held_out_tweets(minilm: BackboneWorker) -> None:
    rows = tweet_tasks(seed=0)["sentiment"]
    fit, held_out = rows[:800], rows[800:1200]
    cfg = TrainConfig(epochs=1, eval_fraction=0.1, seed=0)
    result = list(train(minilm, "q", TASK, fit, cfg))[-1]
    assert result.kind == "RESULT"
    key = "sha-q"
    logits = minilm.classify(ClassifyBatch([(key, t) for t, _ in held_out], {key: result.prompt},
                                           {key: TaskSpec.from_dict(TASK)}))
    pred = [TASK["labels"][max(range(2), key=row.__getitem__)] for row in logits]
    acc = sum(p == g for p, (_, g) in zip(pred, held_out, strict=True)) / len(held_out)
    majority = Counter(g for _, g in held_out).most_common(1)[0][1] / len(held_out)
    print(f"held-out accuracy {acc:.3f} vs majority {majority:.3f}")
    assert acc >= majority + 0.05, f"accuracy {acc:.3f} does not clearly beat the majority rate {majority:.3f}"
