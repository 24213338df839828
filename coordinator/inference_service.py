"""Inference: resolve each row's prompt, group rows per backbone, one replica forward per group."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import grpc
from sqlalchemy.orm import Session

from bank import store
from bank.errors import FailedPrecondition, InvalidArgument
from bank.refs import parse_ref
from coordinator.config import ServerConfig
from coordinator.convert import version_name
from coordinator.db import BankDB
from coordinator.pool import ReplicaPool
from promptbank.v1 import inference_pb2 as inf
from promptbank.v1 import inference_pb2_grpc as inf_grpc


@dataclass(frozen=True)
class Resolved:
    """What a row needs from the bank: an immutable version, its backbone pin, its task."""

    version: str
    sha256: str
    backbone: str
    fingerprint: str
    task: dict[str, Any]


class TensorCache:
    """Coordinator-side LRU of prompt bytes by sha256, so a hot prompt's tensor is never re-read from SQL."""

    def __init__(self, max_items: int = 4096):
        self.max_items = max_items
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> bytes:
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: str, data: bytes) -> None:
        self._items[key] = data
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


class InferenceService(inf_grpc.InferenceServicer):
    def __init__(self, db: BankDB, pool: ReplicaPool, config: ServerConfig):
        self.db, self.pool, self.config = db, pool, config
        self.tensors = TensorCache()

    def _validate(self, request: inf.ClassifyRequest) -> None:
        n = len(request.rows)
        if n == 0:
            raise InvalidArgument("rows is empty: send at least one (prompt, text) row")
        if n > self.config.max_rows_per_request:
            raise InvalidArgument(f"{n} rows exceed the limit of {self.config.max_rows_per_request} rows per request")
        for i, row in enumerate(request.rows):
            if not row.text.strip():
                raise InvalidArgument(f"rows[{i}].text is empty")
            if len(row.text) > self.config.max_text_chars:
                raise InvalidArgument(
                    f"rows[{i}].text has {len(row.text)} characters; the limit is {self.config.max_text_chars}"
                )
            parse_ref(row.prompt)  # raises INVALID_ARGUMENT naming the bad reference

    async def resolve(self, refs: set[str]) -> dict[str, Resolved]:
        """Resolve refs in one session; prompt bytes are read only for hashes not cached here."""

        def q(s: Session) -> dict[str, Resolved]:
            out = {}
            for ref in refs:
                v = store.resolve(s, ref)
                if v.sha256 not in self.tensors:
                    self.tensors.put(v.sha256, v.tensor)
                out[ref] = Resolved(version_name(v.prompt.name, v.version), v.sha256, v.backbone.name,
                                    v.backbone_fingerprint, v.prompt.task)
            return out

        return await self.db.run(q)

    def _check_backbone(self, ref: str, r: Resolved) -> None:
        live = self.pool.get(r.backbone).info["fingerprint"]
        if live != r.fingerprint:
            raise FailedPrecondition(
                f"prompt {ref!r} ({r.version}) was trained on backbone {r.backbone!r} with fingerprint "
                f"{r.fingerprint[:12]}, but the served backbone has fingerprint {live[:12]}; retrain or import it for this backbone"
            )

    async def Classify(self, request: inf.ClassifyRequest, context: grpc.aio.ServicerContext) -> inf.ClassifyResponse:
        self._validate(request)
        resolved = await self.resolve({row.prompt for row in request.rows})
        for ref, r in resolved.items():
            self._check_backbone(ref, r)
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(request.rows):
            groups.setdefault(resolved[row.prompt].backbone, []).append(i)

        async def run(backbone: str, idx: list[int]) -> tuple[list[int], list[list[float]]]:
            rs = [resolved[request.rows[i].prompt] for i in idx]
            rows = [(r.sha256, request.rows[i].text) for r, i in zip(rs, idx, strict=True)]
            prompts = {r.sha256: self.tensors.get(r.sha256) for r in rs}
            tasks = {r.sha256: r.task for r in rs}
            return idx, await self.pool.classify(backbone, rows, prompts, tasks)

        results: list[inf.ClassifyResult | None] = [None] * len(request.rows)
        for idx, logits in await asyncio.gather(*[run(b, idx) for b, idx in groups.items()]):
            for i, row_logits in zip(idx, logits, strict=True):
                r = resolved[request.rows[i].prompt]
                results[i] = to_result(r, row_logits)
        return inf.ClassifyResponse(results=results)

    async def Generate(self, request: inf.GenerateRequest, context: grpc.aio.ServicerContext):  # type: ignore[override]
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Generate is not implemented yet (classification only)")
        yield inf.GenerateResponse()  # pragma: no cover - makes this an async generator


def to_result(r: Resolved, logits: list[float]) -> inf.ClassifyResult:
    """Softmax over the task's labels."""
    top = max(logits)
    exp = [math.exp(x - top) for x in logits]
    z = sum(exp)
    labels = r.task["labels"]
    probs = [e / z for e in exp]
    best = max(range(len(probs)), key=probs.__getitem__)
    return inf.ClassifyResult(
        version=r.version, label=labels[best],
        scores=[inf.LabelScore(label=lab, score=p) for lab, p in zip(labels, probs, strict=True)],
    )
