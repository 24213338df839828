"""Is a candidate version not worse than the one an alias points at? The statistics a promotion is decided on.

Paired (a shadow scored the same rows): the difference of accuracies with the Agresti-Min interval (half a row
added to each of the four cells, which keeps its coverage near 95% at small counts) and the exact McNemar test on
the discordant rows. Unpaired (a canary answered its own rows): Newcombe's hybrid score interval from two Wilson
intervals, and a two-proportion z test. The candidate clears when the interval's lower end is >= -margin
(non-inferiority), so no evidence never clears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from promptbank_domain.live import PairedCounts

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Comparison:
    """A candidate against a primary; `method` is "paired", "unpaired" or "none" (no outcomes yet)."""

    primary_version: str
    candidate_version: str
    method: str
    rows: int
    primary_accuracy: float
    candidate_accuracy: float
    difference: float
    low: float
    high: float
    p_value: float
    margin: float
    primary_rows: int = 0
    paired: PairedCounts = PairedCounts()

    @property
    def clears(self) -> bool:
        return self.method != "none" and self.low >= -self.margin

    @property
    def summary(self) -> str:
        if self.method == "none":
            return (f"no outcomes yet for {self.candidate_version} against {self.primary_version}: nothing to "
                    f"judge by (margin {self.margin:g})")
        verdict = "clears" if self.clears else "does not clear"
        rows = (f"{self.rows} paired rows" if self.method == "paired"
                else f"{self.rows} candidate rows vs {self.primary_rows} primary rows")
        return (f"{self.candidate_version} {self.candidate_accuracy:.4f} vs {self.primary_version} "
                f"{self.primary_accuracy:.4f} on {rows}: difference {self.difference:+.4f}, 95% interval "
                f"[{self.low:+.4f}, {self.high:+.4f}], p={self.p_value:.3g}; {verdict} the margin -{self.margin:g}")

    def to_json(self) -> dict[str, object]:
        return {"primary_version": self.primary_version, "candidate_version": self.candidate_version,
                "method": self.method, "rows": self.rows, "primary_rows": self.primary_rows,
                "primary_accuracy": self.primary_accuracy, "candidate_accuracy": self.candidate_accuracy,
                "difference": self.difference, "low": self.low, "high": self.high, "p_value": self.p_value,
                "margin": self.margin, "both": self.paired.both, "primary_only": self.paired.primary_only,
                "candidate_only": self.paired.candidate_only, "neither": self.paired.neither}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Comparison:
        def f(k: str) -> float:
            return float(str(d.get(k, 0.0)))

        def i(k: str) -> int:
            return int(str(d.get(k, 0)))

        return cls(primary_version=str(d.get("primary_version", "")),
                   candidate_version=str(d.get("candidate_version", "")), method=str(d.get("method", "none")),
                   rows=i("rows"), primary_rows=i("primary_rows"), primary_accuracy=f("primary_accuracy"),
                   candidate_accuracy=f("candidate_accuracy"), difference=f("difference"), low=f("low"),
                   high=f("high"), p_value=f("p_value"), margin=f("margin"),
                   paired=PairedCounts(i("both"), i("primary_only"), i("candidate_only"), i("neither")))


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the discordant rows b (only the primary right) and c (only the candidate
    right) under Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2 * tail)


def paired(primary: str, candidate: str, counts: PairedCounts, margin: float) -> Comparison:
    """The candidate minus the primary on the same rows."""
    n = counts.n
    if n == 0:
        return _none(primary, candidate, margin)
    b, c = counts.primary_only, counts.candidate_only
    p_acc = (counts.both + b) / n
    c_acc = (counts.both + c) / n
    # Agresti-Min: add 1/2 to each of the four cells
    bb, cc, nn = b + 0.5, c + 0.5, n + 2.0
    d_adj = (cc - bb) / nn
    se = math.sqrt(max((bb + cc) - (cc - bb) ** 2 / nn, 0.0)) / nn
    low, high = max(-1.0, d_adj - Z95 * se), min(1.0, d_adj + Z95 * se)
    return Comparison(primary, candidate, "paired", n, p_acc, c_acc, c_acc - p_acc, low, high,
                      mcnemar_exact(b, c), margin, paired=counts)


def unpaired(primary: str, candidate: str, primary_kn: tuple[int, int], candidate_kn: tuple[int, int],
             margin: float) -> Comparison:
    """The candidate minus the primary, each on its own rows (k right of n)."""
    (k1, n1), (k2, n2) = primary_kn, candidate_kn
    if n1 == 0 or n2 == 0:
        return _none(primary, candidate, margin, rows=n2, primary_rows=n1)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    pooled = (k1 + k2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = 1.0 if se0 == 0 else math.erfc(abs(d) / se0 / math.sqrt(2))
    return Comparison(primary, candidate, "unpaired", n2, p1, p2, d, max(-1.0, low), min(1.0, high), p_value,
                      margin, primary_rows=n1)


def _none(primary: str, candidate: str, margin: float, rows: int = 0, primary_rows: int = 0) -> Comparison:
    return Comparison(primary, candidate, "none", rows, 0.0, 0.0, 0.0, -1.0, 1.0, 1.0, margin,
                      primary_rows=primary_rows)
