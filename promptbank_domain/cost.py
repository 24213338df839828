"""What one training step of a job costs, in sequences through the backbone, so co-batched groups hold jobs
of like cost: a job whose steps read 1,000 label texts would make every job in its group wait minutes per step.

An encoder that reads label texts through the prompt (pooling "all" or "prompt") runs every label text at
every step, besides the batch's rows; LM verbalizers score label words from the rows' own forward.
"""

from __future__ import annotations

from promptbank_domain.jobs import JobSpec

COST_RATIO = 4.0  # jobs are co-batched only while the costliest step is at most this many times the cheapest
ENCODER = "encoder"  # the architecture whose label texts go through the prompt


def step_rows(spec: JobSpec, architecture: str) -> int:
    """Sequences one step of `spec` runs through a backbone of `architecture`."""
    labels = len(spec.task.labels) if architecture == ENCODER and spec.task.pooling != "text" else 0
    return spec.config.batch_size + labels


def alike(costs: list[int], cost: int) -> bool:
    """Whether a job of `cost` may join a group of jobs of `costs` (within COST_RATIO of each other)."""
    every = [*costs, cost]
    return max(every) <= COST_RATIO * min(every)


def heavy_note(spec: JobSpec, architecture: str) -> str:
    """A warning for the job's queued event when its label texts dominate its steps ("" otherwise)."""
    rows, batch = step_rows(spec, architecture), spec.config.batch_size
    if rows <= COST_RATIO * batch:
        return ""
    return (f"each step reads {len(spec.task.labels)} label texts through the prompt besides its {batch} rows "
            f"(about {rows / batch:.0f}x the cost of the rows alone); it is co-batched only with jobs of like cost "
            f"(pooling 'text' reads the label texts once, without the prompt)")
