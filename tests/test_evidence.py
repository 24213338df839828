"""The statistics a promotion is decided on (promptbank_domain.evidence), against published values, a binomial
worked by hand, and simulation: the 95% intervals must cover the true difference about 95% of the time."""

from __future__ import annotations

import math
import random

import pytest

from promptbank_domain import evidence
from promptbank_domain.live import PairedCounts


@pytest.mark.parametrize("k,n,low,high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, Wilson score method
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    got = evidence.wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_of_nothing_is_the_whole_range() -> None:
    assert evidence.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("primary,candidate,low,high", [
    # Newcombe (1998), "Interval estimation for the difference between independent proportions", method 10
    ((48, 80), (56, 70), 0.0524, 0.3339),
    ((5, 56), (9, 48), -0.0359, 0.2395),
])
def test_newcombe_interval_matches_published_values(primary: tuple[int, int], candidate: tuple[int, int],
                                                    low: float, high: float) -> None:
    c = evidence.unpaired("p", "c", primary, candidate, margin=0.0)
    assert (c.low, c.high) == pytest.approx((low, high), abs=5e-5)
    assert c.method == "unpaired" and c.rows == candidate[1] and c.primary_rows == primary[1]
    assert c.difference == pytest.approx(candidate[0] / candidate[1] - primary[0] / primary[1])


def test_mcnemar_exact_is_the_two_sided_binomial_tail() -> None:
    # b=2, c=8: n=10 discordant rows; P(X <= 2 | Bin(10, 1/2)) = (1 + 10 + 45) / 1024; two-sided doubles it
    assert evidence.mcnemar_exact(2, 8) == pytest.approx(112 / 1024)
    assert evidence.mcnemar_exact(8, 2) == pytest.approx(112 / 1024)
    # b=c: the tail holds more than half, so the p-value is capped at 1
    assert evidence.mcnemar_exact(5, 5) == 1.0
    # b=0, c=6: 2 * (1/2)^6
    assert evidence.mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert evidence.mcnemar_exact(0, 0) == 1.0


def test_paired_comparison_reads_the_four_cells() -> None:
    counts = PairedCounts(both=30, primary_only=5, candidate_only=10, neither=5)
    c = evidence.paired("prompts/p/versions/1", "prompts/p/versions/2", counts, margin=0.02)
    assert (c.method, c.rows) == ("paired", 50)
    assert (c.primary_accuracy, c.candidate_accuracy) == pytest.approx((35 / 50, 40 / 50))
    assert c.difference == pytest.approx(0.1)
    assert c.low < c.difference < c.high
    assert c.p_value == pytest.approx(evidence.mcnemar_exact(5, 10))
    assert c.clears == (c.low >= -0.02)
    assert "50 paired rows" in c.summary and "prompts/p/versions/2" in c.summary
    assert evidence.Comparison.from_json(c.to_json()) == c


def _covers(low: float, high: float, truth: float) -> bool:
    return low <= truth <= high


def test_paired_interval_covers_the_true_difference() -> None:
    """2000 simulated shadows of n=200 rows each: the Agresti-Min interval covers the true difference in at least
    93% of them (nominal 95%)."""
    rng = random.Random(29)
    cells = ("both", "primary_only", "candidate_only", "neither")
    probs = (0.70, 0.08, 0.12, 0.10)
    truth = probs[2] - probs[1]  # candidate accuracy - primary accuracy
    hits = 0
    for _ in range(2000):
        draw = rng.choices(cells, weights=probs, k=200)
        counts = PairedCounts(*(draw.count(cell) for cell in cells))
        c = evidence.paired("a", "b", counts, margin=0.0)
        hits += _covers(c.low, c.high, truth)
    assert hits / 2000 >= 0.93, hits


def test_unpaired_interval_covers_the_true_difference() -> None:
    rng = random.Random(30)
    p1, p2 = 0.80, 0.74
    hits = 0
    for _ in range(2000):
        k1 = sum(rng.random() < p1 for _ in range(200))
        k2 = sum(rng.random() < p2 for _ in range(200))
        c = evidence.unpaired("a", "b", (k1, 200), (k2, 200), margin=0.0)
        hits += _covers(c.low, c.high, p2 - p1)
    assert hits / 2000 >= 0.93, hits


def test_no_evidence_never_clears() -> None:
    none = evidence.paired("a", "b", PairedCounts(), margin=1.0)
    assert none.method == "none" and not none.clears and "no outcomes yet" in none.summary
    for primary, candidate in (((0, 0), (5, 10)), ((5, 10), (0, 0))):
        c = evidence.unpaired("a", "b", primary, candidate, margin=1.0)
        assert c.method == "none" and not c.clears


def test_clearing_is_the_lower_end_against_the_margin() -> None:
    # the same evidence clears a wide margin and fails a narrow one
    counts = PairedCounts(both=80, primary_only=12, candidate_only=8, neither=0)
    wide = evidence.paired("a", "b", counts, margin=0.2)
    narrow = evidence.paired("a", "b", counts, margin=0.0)
    assert wide.low == narrow.low and -0.2 <= wide.low < 0.0
    assert wide.clears and not narrow.clears
    assert "does not clear" in narrow.summary and math.isfinite(narrow.p_value)
