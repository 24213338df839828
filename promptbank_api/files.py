"""File layouts that the client and the server both read: labelled tables and PEFT adapter folders.

One reader for training files, used by the CLI for local files and by the coordinator for files under its
data roots, so a file means the same rows on either side. Every cell is read as text (a label `1` stays
`1`, never `1.0`), nothing is dropped silently (`LabelledRows` counts what was left out and why), and
errors name the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptbank_api.errors import InvalidArgument

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")  # weights that would need pickle: never read


@dataclass(frozen=True)
class LabelledRows:
    """(text, label) rows of a file and the rows left out of it, by reason."""

    rows: list[tuple[str, str]]
    columns: list[str]
    empty_text: list[int] = field(default_factory=list)  # 1-based data row numbers left out: empty text
    empty_label: list[int] = field(default_factory=list)  # ... and empty label

    @property
    def dropped(self) -> int:
        return len(self.empty_text) + len(self.empty_label)

    def summary(self) -> str:
        """One line for people: how many rows were read and which were left out."""
        parts = []
        for what, where in (("an empty text", self.empty_text), ("an empty label", self.empty_label)):
            if where:
                shown = ", ".join(map(str, where[:5])) + (", ..." if len(where) > 5 else "")
                parts.append(f"{len(where)} with {what} (rows {shown})")
        left = f"; left out {' and '.join(parts)}" if parts else ""
        return f"{len(self.rows)} rows{left}"


def _cell(value: Any) -> str:
    """A cell as text: numbers as written (1 -> '1', 1.5 -> '1.5'), JSON booleans as JSON, missing -> ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _utf8(path: Path, raw: bytes, codec: str = "utf-8") -> str:
    """`raw` as UTF-8 (or the `codec` a caller named), or INVALID_ARGUMENT naming the first bad byte and its
    line: a text read under another encoding would change its labels without a word (binary and compressed
    files end here too)."""
    try:
        return raw.decode(codec)
    except LookupError:
        raise InvalidArgument(f"{path}: unknown text encoding {codec!r}") from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        name = "UTF-8" if codec.startswith("utf-8") else codec
        raise InvalidArgument(f"{path}: not {name} text (byte {exc.start}, line {line}: "
                              f"0x{raw[exc.start]:02x}); save it as UTF-8") from None


def read_utf8(path: Path) -> str:
    """A text file, strictly UTF-8 (INVALID_ARGUMENT naming the first byte that is not)."""
    return _utf8(path, path.read_bytes())





def read_table(path: Path, text: str | None = None, delimiter: str = ",") -> tuple[list[str], list[dict[str, Any]]]:
    """A CSV table's header and rows, read as strictly as training data: UTF-8 only (a binary or compressed
    file is named with its first bad byte), no unclosed quote, no repeated column, no row wider than the header.
    `text`: the content when it was read already (standard input)."""
    return _table(path, read_utf8(path) if text is None else text, delimiter)


def shown(columns: list[str], most: int = 10, width: int = 40) -> str:
    """Column names for a message: the first `most`, each cut at `width` characters (a file read with the wrong
    layout has one giant 'column')."""
    names = [c if len(c) <= width else c[: width - 3] + "..." for c in columns[:most]]
    more = f" and {len(columns) - most} more" if len(columns) > most else ""
    return f"{names}{more}"


def _table(path: Path, text: str, delimiter: str) -> tuple[list[str], list[dict[str, Any]]]:
    """A CSV/TSV table, strictly: an unterminated quote, a repeated column name or a row with more cells than
    the header would otherwise shift or merge cells silently."""
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        columns = list(reader.fieldnames or [])
        seen: set[str] = set()
        for c in columns:
            if c in seen:
                raise InvalidArgument(f"{path}: line 1: column {c[:40]!r} appears twice in the header")
            seen.add(c)
        records = []
        for rec in reader:
            if None in rec:  # DictReader's key for cells past the header's
                raise InvalidArgument(f"{path}: line {reader.line_num}: {len(columns) + len(rec[None])} cells, "
                                      f"but the header names {len(columns)} columns")
            records.append(rec)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):  # the quote opened on the line after the last whole record
            raise InvalidArgument(f"{path}: line {reader.line_num + 1}: a quoted cell opened here is never "
                                  f"closed") from None
        raise InvalidArgument(f"{path}: line {reader.reader.line_num}: {exc}") from None
    return columns, records


def json_lines(path: Path, text: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of a JSON-lines file; blank lines skipped, anything else not an object is
    INVALID_ARGUMENT naming `path:line`. `text`: the content when it was read already (standard input)."""
    if text is None and path.is_dir():
        raise InvalidArgument(f"{path} is a directory; name a JSON-lines file")
    out = []
    for n, line in enumerate((read_utf8(path) if text is None else text).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise InvalidArgument(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
        out.append((n, rec))
    return out


def _records(path: Path, encoding: str = "") -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, records) of a table file; every CSV cell stays a string. `encoding`: a CSV/TSV's, when it is
    known not to be UTF-8 ("" = UTF-8, refused otherwise)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        raw = path.read_bytes()
        text = _utf8(path, raw, encoding or "utf-8-sig")
        return _table(path, text, "\t" if suffix == ".tsv" else ",")
    if suffix == ".jsonl":
        records = [rec for _, rec in json_lines(path)]
        return list(dict.fromkeys(k for r in records for k in r)), records
    if suffix == ".json":
        try:
            doc = json.loads(read_utf8(path))
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}: line {exc.lineno}: not JSON ({exc.msg})") from None
        if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):  # {"col": [...], ...}
            n = max((len(v) for v in doc.values()), default=0)
            doc = [{k: (v[i] if i < len(v) else None) for k, v in doc.items()} for i in range(n)]
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise InvalidArgument(f"{path}: expected a list of objects or an object of columns")
        return list(dict.fromkeys(k for r in doc for k in r)), doc
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # ships with `datasets`

        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any arrow failure is a bad file
            raise InvalidArgument(f"{path}: not a readable parquet file: {exc}") from None
        return list(table.column_names), table.to_pylist()
    raise InvalidArgument(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {list(TABLE_SUFFIXES)}")


def read_labelled(path: str | Path, text_column: str = "text", label_column: str = "label",
                  encoding: str = "") -> LabelledRows:
    """The (text, label) rows of a csv/tsv/json/jsonl/parquet file, every cell as text; a CSV/TSV in another
    encoding than UTF-8 only when the caller names it (`encoding`)."""
    p = Path(path)
    if p.is_dir():
        raise InvalidArgument(f"{p} is a directory; name a {'/'.join(TABLE_SUFFIXES)} file")
    if not p.is_file():
        raise InvalidArgument(f"data file {str(p)!r} does not exist")
    if p.stat().st_size == 0:
        raise InvalidArgument(f"{p} is empty (0 bytes): no header and no rows")
    columns, records = _records(p, encoding)
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise InvalidArgument(f"{p} has no column(s) {missing}; its columns are {shown(columns)} "
                              f"(choose them with the text and label column options)")
    rows, empty_text, empty_label = [], [], []
    for n, rec in enumerate(records, 1):
        text, label = _cell(rec.get(text_column)), _cell(rec.get(label_column)).strip()
        if not text.strip():
            empty_text.append(n)
        elif not label:
            empty_label.append(n)
        else:
            rows.append((text, label))
    read = LabelledRows(rows, columns, empty_text, empty_label)
    if not rows:
        why = read.summary() if records else "a header but no data rows" if columns else "the file is empty"
        raise InvalidArgument(f"{p}: no rows to train on ({why})")
    return read
