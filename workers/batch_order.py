"""A job's batches in each epoch, and the tokens each row keeps: functions of (seed, epoch, row) only, so a resumed
run sees the same batches and co-batched jobs never reorder each other's draws, with no RNG state to keep."""

from __future__ import annotations

import random
from collections.abc import Collection

BUCKET_BATCHES = 16  # batches whose rows are sorted by length together (padding vs. shuffling)


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Epoch e's batches of row indices. Rows are shuffled, sorted by length (`lengths`) within windows of
    BUCKET_BATCHES batches (less padding per forward), cut into batches, and the batches shuffled again."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * BUCKET_BATCHES
    batches = []
    for w in range(0, len(order), window):
        rows = sorted(order[w : w + window], key=lambda i: lengths[i])
        batches += [rows[b : b + batch_size] for b in range(0, len(rows), batch_size)]
    rng.shuffle(batches)
    return batches


def token_dropout(row: list[int], p: float, special: Collection[int], seed: int, epoch: int, i: int) -> list[int]:
    """Row i's tokens in `epoch` with each non-special token dropped with probability `p` (word dropout, a
    data augmentation); a row that would lose every token keeps all."""
    if not p:
        return row
    rng = random.Random(f"{seed}:{epoch}:{i}:drop")
    kept = [t for t in row if t in special or rng.random() >= p]
    return kept if any(t not in special for t in kept) else row
