"""Uploaded training datasets: rows stored once (JSON lines of [text, label]), named `datasets/{id}` by jobs."""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bank.idempotency import remember_request, seen_request
from bank.models import Dataset, DatasetChunk, Job
from promptbank_api.errors import NotFound, PermissionDenied, ResourceExhausted
from promptbank_domain.tokens import DatasetRecord

Rows = list[tuple[str, str]]
SPOOL_BYTES = 1 << 20  # an upload past this goes to disk while it streams in
PIECE_BYTES = 1 << 20  # bytes per stored piece


def row_line(text: str, label: str) -> bytes:
    """One example as stored: a JSON line `[text, label]` (lines are joined by a newline)."""
    return json.dumps([text, label]).encode()


def encode_rows(rows: Rows) -> bytes:
    return b"\n".join(row_line(t, lab) for t, lab in rows)


def decode_rows(data: bytes) -> Rows:
    return [(text, label) for text, label in (json.loads(line) for line in data.decode().splitlines() if line)]


class UploadSpool:
    """An upload's rows as they stream in, kept only as JSON lines in a temporary file (in memory up to
    SPOOL_BYTES, on disk past that), with their hash, count, size and label counts. The bytes are exactly
    `encode_rows` of all the rows, so the digest is the content's whatever the chunking."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.rows = self.size = 0
        self.labels: Counter[str] = Counter()

    def add(self, rows: Rows) -> None:
        for text, label in rows:
            line = (b"\n" if self.rows else b"") + row_line(text, label)
            self.file.write(line)
            self._hash.update(line)
            self.rows, self.size = self.rows + 1, self.size + len(line)
            self.labels[label] += 1

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def pieces(self) -> Iterator[bytes]:
        self.file.seek(0)
        while piece := self.file.read(PIECE_BYTES):
            yield piece

    def close(self) -> None:
        self.file.close()


def stored_bytes(s: Session, principal: str) -> int:
    """Bytes a principal stores: its uploads and the inline examples of its jobs that have not ended."""
    uploads = s.scalar(select(func.coalesce(func.sum(Dataset.size), 0)).where(Dataset.principal == principal))
    inline = s.scalar(select(func.coalesce(func.sum(Job.inline_bytes), 0))
                      .where(Job.principal == principal, Job.inline_bytes > 0))
    return int(uploads or 0) + int(inline or 0)


def check_storage(s: Session, principal: str, adding: int, quota: int, what: str) -> None:
    """RESOURCE_EXHAUSTED when `adding` more bytes (of `what`) would take the principal past `quota`."""
    used = stored_bytes(s, principal)
    if used + adding > quota:
        raise ResourceExhausted(f"uploads and inline examples by {principal!r} would take {used + adding} bytes "
                                f"with these {what}; the limit is {quota} (promptbank serve --limit-upload-storage); "
                                f"wait for your jobs to end, or ask an admin")


def save_upload(s: Session, spool: UploadSpool, request_id: str, principal: str, quota: int) -> DatasetRecord:
    """Store an upload piece by piece; a retry by the same principal with the same request_id and content
    returns the first one (AIP-155). RESOURCE_EXHAUSTED when it would take what the principal stores past
    `quota` bytes."""
    earlier = seen_request(s, request_id, "UploadDataset", spool.digest, principal=principal)
    if earlier:
        return get_dataset(s, earlier.removeprefix("datasets/"))
    check_storage(s, principal, spool.size, quota, "uploaded rows")
    ds = Dataset(id=uuid.uuid4().hex[:16], rows=spool.rows, label_counts=dict(spool.labels), data=b"",
                 principal=principal, size=spool.size)
    s.add(ds)
    s.flush()
    for seq, piece in enumerate(spool.pieces()):
        chunk = DatasetChunk(dataset_id=ds.id, seq=seq, data=piece)
        s.add(chunk)
        s.flush()
        s.expunge(chunk)  # written: let the piece go
    remember_request(s, request_id, "UploadDataset", spool.digest, f"datasets/{ds.id}", principal=principal)
    return _record(ds)


def _record(ds: Dataset) -> DatasetRecord:
    return DatasetRecord(id=ds.id, rows=ds.rows, label_counts={k: int(v) for k, v in ds.label_counts.items()},
                         principal=ds.principal, size=ds.size)


def get_dataset(s: Session, data_id: str) -> DatasetRecord:
    return _record(_dataset_row(s, data_id))


def _dataset_row(s: Session, data_id: str) -> Dataset:
    ds = s.get(Dataset, data_id)
    if ds is None:
        raise NotFound(f"dataset 'datasets/{data_id}' not found; upload it with UploadDataset first")
    return ds


def dataset_rows(s: Session, data_id: str, principal: str | None) -> Rows:
    """An upload's rows, for `principal` (None: any, an admin). Another principal's upload is PERMISSION_DENIED
    before a row is read, so nothing of it (a label) can reach an error message."""
    ds = _dataset_row(s, data_id)
    if principal is not None and ds.principal != principal:
        raise PermissionDenied(f"dataset 'datasets/{data_id}' was uploaded by another principal; a trainer trains "
                               f"only on its own uploads (upload the rows yourself)")
    pieces = s.scalars(select(DatasetChunk.data).where(DatasetChunk.dataset_id == data_id)
                       .order_by(DatasetChunk.seq)).all()
    return decode_rows(b"".join(pieces) if pieces else ds.data)
