"""Research, not a bench: log the gradient norm of a prompt job before each AdamW step, to see what happens
when a run collapses (docs/research.md, "Seven epochs, a gradient spike, and clipping").

    python bench/research/grad_norms.py [--config '{"epochs": 7}'] [--kind deep] [--seed 0] [--stop-at 760]

Trains on the development split of bench/quality.py with the kind's product defaults overridden by
`--config`, stops after `--stop-at` steps, and prints every tenth step and every step whose gradient norm is
above 5 times the median: the loss, the gradient norm of the job's trainable parameters (the prompt, or its
projection) as the optimizer sees it, the largest per-position prompt norm, and the learning rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="deep", choices=["input", "deep"])
    ap.add_argument("--config", default="{}", help="JSON overrides of the kind's TrainConfig defaults")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop-at", type=int, default=760, help="stop after this many steps (the schedule is the full run's)")
    a = ap.parse_args()

    import quality
    import torch

    from promptbank_domain.task import TaskSpec
    from promptbank_domain.train_config import TrainConfig
    from workers import train as trainer_module
    from workers.actor import BackboneWorker
    from workers.protocol import TrainRequest

    log: list[tuple[int, float, float, float, float]] = []
    step_after = trainer_module.Trainer.after_step

    def after_step(self, loss: float, rows: int) -> Iterator[object]:  # type: ignore[no-untyped-def]
        grads = [p.grad.float() for p in self.parameters() if p.grad is not None]
        norm = float(torch.sqrt(sum((g**2).sum() for g in grads)))
        log.append((self.step + 1, loss, norm, float(self.prompt.detach().norm(dim=-1).max()),
                    self.opt.param_groups[0]["lr"]))
        yield from step_after(self, loss, rows)

    trainer_module.Trainer.after_step = after_step  # type: ignore[method-assign]
    dev = quality.load_splits(3000, 1000, 2000)["dev"]
    worker = BackboneWorker(quality.packaged_minilm())
    cfg = TrainConfig.from_dict({**TrainConfig.defaults(a.kind).to_dict(), **json.loads(a.config), "seed": a.seed})
    t0 = time.perf_counter()
    for e in worker.train(TrainRequest("grad-norms", TaskSpec(labels=tuple(quality.LABELS)), cfg, dev.train)):
        if e.kind == "EVAL":
            print(f"eval at step {e.step}: {e.metrics}", flush=True)
        if e.step >= a.stop_at:
            break
    median = statistics.median(n for _, _, n, _, _ in log)
    print(f"median gradient norm {median:.4f} over {len(log)} steps ({time.perf_counter() - t0:.0f} s)")
    for step, loss, norm, prompt_norm, lr in log:
        if step % 10 == 0 or norm > 5 * median:
            print(f"step {step:5d} loss {loss:.4f} grad {norm:9.4f} max prompt norm {prompt_norm:8.2f} lr {lr:.2e}")


if __name__ == "__main__":
    main()
