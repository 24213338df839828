"""Length grouping of mixed rows into forwards: every row once, caps kept, and the cheapest cut."""

from __future__ import annotations

import itertools
import random

import pytest

from workers.grouping import length_groups


def cost_of(groups: list[list[int]], lengths: list[int], cost: int) -> int:
    return sum(cost + len(g) * max(lengths[i] for i in g) for g in groups)


def brute_force(lengths: list[int], cost: int, max_rows: int | None) -> int:
    """Cheapest cut of the sorted rows into contiguous runs, by trying every cut."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = None
    for cuts in itertools.product([False, True], repeat=len(order) - 1):
        groups, cur = [], [order[0]]
        for i, cut in zip(order[1:], cuts, strict=True):
            if cut:
                groups.append(cur)
                cur = []
            cur.append(i)
        groups.append(cur)
        if max_rows is not None and any(len(g) > max_rows for g in groups):
            continue
        c = cost_of(groups, lengths, cost)
        best = c if best is None else min(best, c)
    assert best is not None
    return best


@pytest.mark.parametrize("seed", range(20))
def test_groups_are_the_cheapest_cut_and_hold_every_row_once(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 90) for _ in range(rng.randint(1, 10))]
    cost, max_rows = rng.choice([0, 16, 64, 1000]), rng.choice([None, 3, 5])
    groups = length_groups(lengths, cost, max_rows=max_rows)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert max_rows is None or all(len(g) <= max_rows for g in groups)
    assert cost_of(groups, lengths, cost) == brute_force(lengths, cost, max_rows)


def as_sets(groups: list[list[int]]) -> list[set[int]]:
    return [set(g) for g in groups]


def test_cheap_forwards_split_by_length_and_dear_ones_merge() -> None:
    lengths = [10, 80, 11, 81, 10, 80]
    assert as_sets(length_groups(lengths, cost=0)) == [{0, 4}, {2}, {1, 5}, {3}]  # no padding; ties merge
    assert as_sets(length_groups(lengths, cost=64)) == [{0, 2, 4}, {1, 3, 5}]  # short with short, long with long
    assert as_sets(length_groups(lengths, cost=10**6)) == [set(range(6))]  # one forward


def test_position_cap_splits_and_a_longer_row_goes_alone() -> None:
    groups = length_groups([50, 50, 50, 500], cost=10**6, max_positions=120)
    assert sorted(map(len, groups)) == [1, 1, 2] and groups[-1] == [3]
    assert length_groups([], cost=64) == []
