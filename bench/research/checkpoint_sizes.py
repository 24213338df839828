"""Research, not a bench: how many bytes a training checkpoint takes, tensor by tensor, for an input prompt, a
deep prompt trained directly and one trained through its prefix projection, each with its kind's product
defaults (docs/architecture.md, "Checkpoints").

    python bench/research/checkpoint_sizes.py [--model PATH]

Trains each job for two steps on a few made-up rows (the sizes depend on the model and the settings, not on
the data) with a checkpoint after each: the first is a run's checkpoint mid-way (what a resume continues), the
second its last (at the end, after its evaluation: only the result is left to make). `--model` defaults to the
packaged all-MiniLM-L6-v2.
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
    print(f"{'job':18} {'settings':42} {'mid-run':>12} {'last':>12}")
    for name, (kind, over) in JOBS.items():
        base = TrainConfig.defaults(kind).to_dict()
        cfg = TrainConfig.from_dict({**base, **over, "max_steps": 2, "checkpoint_every": 1, "eval_fraction": 0.25})
        events = list(worker.train(TrainRequest(f"sizes-{kind}", task, cfg, ROWS)))
        ckpts = [e.checkpoint for e in events if e.kind == "CHECKPOINT" and e.checkpoint]
        assert len(ckpts) == 2, f"{name}: {len(ckpts)} checkpoints, not 2 ({[e.kind for e in events]})"
        settings = f"{cfg.num_virtual_tokens} tokens, prefix_projection {cfg.prefix_projection}"
        print(f"{name:18} {settings:42} {len(ckpts[0]):12,d} {len(ckpts[1]):12,d}")
        if a.tensors:
            for which, data in zip(("mid-run", "last"), ckpts, strict=True):
                tensors, _ = read_safetensors(data, "checkpoint")
                for key, t in tensors.items():
                    print(f"    {which:8} {key:28} {str(list(t.shape)):16} {t.numel() * t.element_size():12,d}")


if __name__ == "__main__":
    main()
