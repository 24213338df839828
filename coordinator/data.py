"""Training data on the server side: inline examples, uploads, files under the data roots, hub datasets.

Everything is validated before a job is committed, with INVALID_ARGUMENT naming the problem: missing
columns (and which exist), empty data, empty texts or labels, too many rows. Files are read by the same
reader as the CLI's (`promptbank_api.files`), so a file means the same rows on either side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coordinator.limits import Limits
from coordinator.roots import looks_local, require_under
from promptbank_api.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from promptbank_api.files import TABLE_SUFFIXES, read_labelled
from promptbank_api.v1 import jobs_pb2 as jp

Rows = list[tuple[str, str]]


def check_rows(rows: Rows, limits: Limits, where: str) -> Rows:
    if not rows:
        raise InvalidArgument(f"{where} is empty: a train job needs labelled examples")
    limits.check("train_examples", len(rows), f"{where}: examples")
    return check_examples(rows, limits, where)


def check_examples(rows: Rows, limits: Limits, where: str, first: int = 0) -> Rows:
    """Each example has a text and a label, each within its limit; `first` numbers them in a stream."""
    for i, (text, label) in enumerate(rows, first):
        if not text.strip():
            raise InvalidArgument(f"{where} example {i} has an empty text")
        if not label.strip():
            raise InvalidArgument(f"{where} example {i} has an empty label")
        limits.check_text(text, f"{where} example {i}")
        limits.check("label_chars", len(label), f"{where} example {i} label: characters")
    return rows


def inline_rows(ds: jp.Dataset) -> Rows:
    return [(ex.text, ex.label) for ex in ds.inline.examples]


def _hub_columns(table: Any, text_column: str, label_column: str, where: str) -> Rows:
    cols = list(table.column_names)
    missing = [c for c in (text_column, label_column) if c not in cols]
    if missing:
        raise InvalidArgument(f"{where} has no column(s) {missing}; its columns are {cols} "
                              f"(set dataset.text_column / dataset.label_column)")
    names = getattr(table.features.get(label_column), "names", None)  # ClassLabel columns hold ints: use names
    return [(str(t), str(names[lab] if names else lab)) for t, lab in zip(table[text_column], table[label_column],
                                                                          strict=True)
            if t is not None and lab is not None]


def check_uri(uri: str, limits: Limits) -> None:
    """A dataset.uri within its limit and free of NUL (which no path, id or upload name holds)."""
    limits.check_chars("uri_chars", uri, "dataset.uri")


def _read_file(uri: str, text_column: str, label_column: str, roots: tuple[str, ...]) -> tuple[Rows, str]:
    """A table file under the data roots. Messages quote `uri` as given, never the path it expands to."""
    require_under(uri, roots, "dataset file", "data", "--data-root", "; send the rows inline or upload them")
    path = Path(uri).expanduser()
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InvalidArgument(f"dataset file {uri!r}: use one of {list(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise InvalidArgument(f"dataset file {uri!r} does not exist on the coordinator")
    try:
        read = read_labelled(path, text_column, label_column)
    except InvalidArgument as exc:
        raise InvalidArgument(f"dataset file {uri!r}: {str(exc).replace(str(path), uri)}") from None
    return read.rows, (f"read {read.summary()} from {uri}" if read.dropped else "")


def load_uri(uri: str, text_column: str, label_column: str, roots: tuple[str, ...], allow_hub: bool = False
             ) -> tuple[Rows, str]:
    """A server file under one of `roots` (csv/tsv/json/jsonl/parquet), or a hub dataset id (`name[:split]`);
    returns the rows and a note of what was left out ("" when nothing was)."""
    text_column, label_column = text_column or "text", label_column or "label"
    try:
        local = Path(uri).suffix.lower() in TABLE_SUFFIXES or looks_local(uri)
        if local:  # never handed to the hub loader
            return _read_file(uri, text_column, label_column, roots)
    except OSError as exc:  # a name too long for the file system, a loop of links...: no such file here
        raise InvalidArgument(f"dataset file {uri!r} is not a usable path on the coordinator "
                              f"({exc.strerror or type(exc).__name__})") from None
    if not allow_hub:
        raise PermissionDenied(f"dataset {uri!r} is not a file under the data roots, and hub datasets are off "
                               f"(start the server with --allow-hub); send the rows inline or upload them")
    import datasets  # >= 4: dataset scripts are gone, so loading runs no code from the hub

    name, _, split = uri.partition(":")
    try:
        table = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, gated...
        raise FailedPrecondition(f"could not load dataset {uri!r} from the Hugging Face hub: {exc}") from None
    rows = _hub_columns(table, text_column, label_column, f"hub dataset {uri!r}")
    left = len(table) - len(rows)
    return rows, (f"read {len(rows)} rows from {uri}; left out {left} with a missing text or label" if left else "")
