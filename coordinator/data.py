"""Training data on the server side: inline examples, uploads, local files and hub datasets via `datasets`.

Everything is validated before a job is committed, with INVALID_ARGUMENT naming the problem: missing
columns (and which exist), empty data, empty texts or labels, too many rows.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from bank.errors import FailedPrecondition, InvalidArgument, PermissionDenied, ResourceExhausted
from promptbank.v1 import jobs_pb2 as jp

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def check_rows(rows: list[tuple[str, str]], limit: int, where: str) -> list[tuple[str, str]]:
    if not rows:
        raise InvalidArgument(f"{where} is empty: a train job needs labelled examples")
    if len(rows) > limit:
        raise ResourceExhausted(f"{where} has {len(rows)} examples; the limit is {limit}")
    for i, (text, label) in enumerate(rows):
        if not text.strip():
            raise InvalidArgument(f"{where} example {i} has an empty text")
        if not label.strip():
            raise InvalidArgument(f"{where} example {i} has an empty label")
    return rows


def encode_rows(rows: list[tuple[str, str]]) -> bytes:
    return "\n".join(json.dumps([t, lab]) for t, lab in rows).encode()


def decode_rows(data: bytes) -> list[tuple[str, str]]:
    return [tuple(json.loads(line)) for line in data.decode().splitlines() if line]  # type: ignore[misc]


def label_counts(rows: list[tuple[str, str]]) -> dict[str, int]:
    return dict(Counter(label for _, label in rows))


def _columns(table: Any, text_column: str, label_column: str, where: str) -> list[tuple[str, str]]:
    cols = list(table.column_names)
    missing = [c for c in (text_column, label_column) if c not in cols]
    if missing:
        raise InvalidArgument(f"{where} has no column(s) {missing}; its columns are {cols} "
                              f"(set dataset.text_column / dataset.label_column)")
    feature = table.features.get(label_column)
    names = getattr(feature, "names", None)  # ClassLabel columns hold ints: use their names
    texts, labels = table[text_column], table[label_column]
    return [(str(t), str(names[lab] if names else lab)) for t, lab in zip(texts, labels, strict=True)
            if t is not None and lab is not None]


def check_readable(path: Path, roots: tuple[str, ...]) -> None:
    """A client may name a server file only inside a configured data root (symlinks resolved first)."""
    real = path.resolve()
    if not any(real.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
        where = f"the data roots {list(roots)}" if roots else "no data roots (start the server with --data-root DIR)"
        raise PermissionDenied(f"dataset file {str(path)!r} is outside {where}; send the rows inline or upload them")


def load_uri(uri: str, text_column: str, label_column: str, roots: tuple[str, ...]) -> list[tuple[str, str]]:
    """A server file under one of `roots` through `datasets` (csv/tsv/json/jsonl/parquet), or a hub dataset
    id (`name[:split]`)."""
    import datasets

    text_column, label_column = text_column or "text", label_column or "label"
    path = Path(uri).expanduser()
    local = path.suffix.lower() in FILE_BUILDERS or path.exists() or uri.startswith(("/", ".", "~"))
    if local:  # never handed to the hub loader, which would read a local directory of the same name
        check_readable(path, roots)
        if path.suffix.lower() not in FILE_BUILDERS:
            raise InvalidArgument(f"dataset file {uri!r}: use one of {sorted(FILE_BUILDERS)}")
        if not path.is_file():
            raise InvalidArgument(f"dataset file {uri!r} does not exist on the coordinator")
        kw: dict[str, Any] = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        builder = FILE_BUILDERS[path.suffix.lower()]
        try:
            table = datasets.load_dataset(builder, data_files=str(path), split="train", **kw)
        except Exception as exc:  # noqa: BLE001 - retry a CSV as latin-1, else name the problem
            if builder != "csv":
                raise InvalidArgument(f"could not read {uri!r}: {exc}") from None
            try:
                table = datasets.load_dataset(builder, data_files=str(path), split="train", encoding="latin-1", **kw)
            except Exception as exc2:  # noqa: BLE001
                raise InvalidArgument(f"could not read {uri!r}: {exc2}") from None
        return _columns(table, text_column, label_column, f"dataset file {uri!r}")
    name, _, split = uri.partition(":")
    try:
        table = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, gated...
        raise FailedPrecondition(f"could not load dataset {uri!r} from the Hugging Face hub: {exc}") from None
    return _columns(table, text_column, label_column, f"hub dataset {uri!r}")


def inline_rows(ds: jp.Dataset) -> list[tuple[str, str]]:
    return [(ex.text, ex.label) for ex in ds.inline.examples]
