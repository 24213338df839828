"""Cut rows of mixed lengths into forwards: few forwards, little padding.

A padded forward costs about (rows x longest row) positions plus a fixed price per call. Co-batched training
jobs and mixed inference requests bring rows of very different lengths (each job's batch is length-bucketed
on its own), so one padded forward over all of them can cost more than the jobs run one after another.
Rows are independent of their batch mates (see soft_prompt), so the grouping changes speed, never results.
"""

from __future__ import annotations

import torch

# What one extra forward costs, in padded positions. CPU: measured on the packaged MiniLM (2 cores), a forward
# + backward costs ~11 ms + 0.25 ms per position in fp32 (~45 positions) and ~15 ms + 0.15 ms per position
# under bf16 autocast (~100); GPU: launch-bound at these sizes, so rows stay together unless the caps split them.
FORWARD_COST = {"cpu": 96}
FORWARD_COST_ACCELERATOR = 1 << 14


def forward_cost(device: torch.device) -> int:
    return FORWARD_COST.get(device.type, FORWARD_COST_ACCELERATOR)


def length_groups(
    lengths: list[int], cost: int, max_rows: int | None = None, max_positions: int | None = None
) -> list[list[int]]:
    """Row indices sorted by length, cut where it minimises `sum(rows x longest) + cost x forwards`, each
    forward holding at most `max_rows` rows and `max_positions` padded positions (a longer row goes alone).

    Exact by dynamic programming over the sorted lengths: O(n x max_rows).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sorted_len = [lengths[i] for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest way to run the j shortest rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sorted_len[j - 1]
        for i in range(j - 1, -1, -1):
            rows = j - i
            if rows > 1 and ((max_rows is not None and rows > max_rows)
                             or (max_positions is not None and rows * longest > max_positions)):
                break
            c = best[i] + cost + rows * longest
            if c <= best[j]:  # on a tie, the longer run: fewer forwards
                best[j], cut[j] = c, i
    groups: list[list[int]] = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]
