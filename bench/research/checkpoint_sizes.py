"""Research, not a bench: how many bytes a training checkpoint takes, tensor by tensor, for an input prompt, a
deep prompt trained directly and one trained through its prefix projection, each with its kind's product
defaults (docs/architecture.md, "Checkpoints").

    python bench/research/checkpoint_sizes.py [--model PATH]

Trains each job for four steps on a few made-up rows (the sizes depend on the model and the settings, not on
the data; 8 rows a step, an evaluation after step 3, the end of the first epoch, and at the end) with a
checkpoint after each step, and prints three of them: mid-run before any evaluation (step 1), mid-run with an
evaluation kept (step 3; what most of a run's checkpoints are) and the last (step 4, at the end, after its
evaluation: only the result is left to make). `--model` defaults to the packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

ROWS = [(f"{word} {thing} number {i}", label) for i in range(8) for word, label in (("great", "pos"), ("awful", "neg"))
        for thing in ("film", "meal")]
JOBS = {"input": ("input", {}), "deep, direct": ("deep", {"prefix_projection": 0}), "deep, projected": ("deep", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="a local model directory (default: the packaged MiniLM)")
    ap.add_argument("--tensors", action="store_true", help="also list every tensor of each checkpoint")
    a = ap.parse_args()

    from bank.codec import read_safetensors
    from coordinator.config import packaged_minilm
    from promptbank_domain.task import TaskSpec
    from promptbank_domain.train_config import TrainConfig
    from workers.actor import BackboneWorker
    from workers.protocol import TrainRequest

    worker = BackboneWorker(a.model or packaged_minilm())
    task = TaskSpec(labels=("neg", "pos"))
    print(f"{'job':16} {'settings':40} {'step 1':>12} {'kept, step 3':>13} {'last, step 4':>13}")
    for name, (kind, over) in JOBS.items():
        base = TrainConfig.defaults(kind).to_dict()
        cfg = TrainConfig.from_dict({**base, **over, "max_steps": 4, "batch_size": 8, "checkpoint_every": 1,
                                     "eval_fraction": 0.25})
        events = list(worker.train(TrainRequest(f"sizes-{kind}", task, cfg, ROWS)))
        ckpts = {e.step: e.checkpoint for e in events if e.kind == "CHECKPOINT" and e.checkpoint}
        assert sorted(ckpts) == [1, 2, 3, 4], f"{name}: checkpoints at {sorted(ckpts)} ({[e.kind for e in events]})"
        settings = f"{cfg.num_virtual_tokens} tokens, prefix_projection {cfg.prefix_projection}"
        print(f"{name:16} {settings:40} {len(ckpts[1]):12,d} {len(ckpts[3]):13,d} {len(ckpts[4]):13,d}")
        if a.tensors:
            for step in (1, 3, 4):
                tensors, _ = read_safetensors(ckpts[step], "checkpoint")
                for key, t in sorted(tensors.items()):
                    print(f"    step {step} {key:34} {str(list(t.shape)):13} {t.numel() * t.element_size():11,d}")

if __name__ == "__main__":
    main()
