"""Uploaded training datasets: rows stored once (JSON lines of [text, label]), named `datasets/{id}` by jobs."""

from __future__ import annotations

import json
import uuid
from collections import Counter

from sqlalchemy.orm import Session

from bank.catalog import remember_request, seen_request
from bank.models import Dataset
from promptbank_api.errors import NotFound

Rows = list[tuple[str, str]]


def encode_rows(rows: Rows) -> bytes:
    return "\n".join(json.dumps([t, lab]) for t, lab in rows).encode()


def decode_rows(data: bytes) -> Rows:
    return [tuple(json.loads(line)) for line in data.decode().splitlines() if line]  # type: ignore[misc]


def label_counts(rows: Rows) -> dict[str, int]:
    return dict(Counter(label for _, label in rows))


def save_upload(s: Session, rows: Rows, request_id: str, digest: str) -> Dataset:
    """Store an upload; a retry with the same request_id and content returns the first one (AIP-155)."""
    earlier = seen_request(s, request_id, "UploadDataset", digest)
    if earlier:
        return get_dataset(s, earlier.removeprefix("datasets/"))
    ds = Dataset(id=uuid.uuid4().hex[:16], rows=len(rows), label_counts=label_counts(rows), data=encode_rows(rows))
    s.add(ds)
    s.flush()
    remember_request(s, request_id, "UploadDataset", digest, f"datasets/{ds.id}")
    return ds


def get_dataset(s: Session, data_id: str) -> Dataset:
    ds = s.get(Dataset, data_id)
    if ds is None:
        raise NotFound(f"dataset 'datasets/{data_id}' not found; upload it with UploadDataset first")
    return ds


def dataset_rows(s: Session, data_id: str) -> Rows:
    return decode_rows(get_dataset(s, data_id).data)
