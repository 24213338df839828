"""Shared timing helpers for the bench scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall seconds of `fn()` over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired_medians(a: Callable[[], object], b: Callable[[], object], repeats: int,
                   warmup: int = 2) -> tuple[float, float]:
    """Median wall seconds of `a()` and of `b()`, timed in alternating rounds (a b, then b a, ...) so that a
    machine whose speed drifts during the run (other processes, heat, caches) weighs on both alike."""
    for _ in range(warmup):
        a()
        b()
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(repeats):
        order = ((0, a), (1, b)) if r % 2 == 0 else ((1, b), (0, a))
        for k, fn in order:
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return statistics.median(times[0]), statistics.median(times[1])


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]
