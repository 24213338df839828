"""Inference: resolve each row's prompt(s), micro-batch rows per backbone across requests, split results back."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import grpc

from bank import catalog, rollouts
from bank.writer import BankDB, Tx
from coordinator import auth, generate_options, rollout
from coordinator.accepted import accepted
from coordinator.batcher import BatchLimits, MicroBatcher, estimate_tokens
from coordinator.chat import ChatTemplates
from coordinator.config import ServerConfig
from coordinator.metrics import Metrics
from coordinator.outcome_log import OutcomeLog
from coordinator.pool import ReplicaPool
from promptbank_api.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from promptbank_api.names import parse_ref
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import inference_pb2_grpc as inf_grpc
from promptbank_domain.catalog import ServedVersion as Resolved  # what a row needs from the bank
from promptbank_domain.live import Route
from workers.cache import LRU

GENERATIVE = ("causal_lm", "seq2seq")
RESOLVED_MAX = 100_000  # cached resolutions; the cache starts over past this


class InferenceService(inf_grpc.InferenceServicer):
    def __init__(self, db: BankDB, pool: ReplicaPool, config: ServerConfig, metrics: Metrics | None = None,
                 outcome_log: OutcomeLog | None = None):
        self.db, self.pool, self.config, self.outcome_log = db, pool, config, outcome_log
        self.metrics = metrics or pool.metrics
        self.tensors: LRU[bytes] = LRU(config.prompt_cache_bytes, len)  # sha256 -> prompt bytes
        self.limits = BatchLimits(config.batch_max_rows, config.batch_max_tokens, config.batch_max_wait_ms,
                                  config.batch_forward_positions)
        self.batchers: dict[str, MicroBatcher] = {}
        self.chat_templates = ChatTemplates()  # backbone -> its tokenizer's chat template (Generate's messages)
        self._resolved: dict[str, Route] = {}  # ref -> resolution, valid at catalog generation `_generation`
        self._generation = -1
        self.resolutions = self.resolution_hits = 0  # counters (tests, logs)

    def batcher(self, backbone: str) -> MicroBatcher:
        if backbone not in self.batchers:
            self.batchers[backbone] = MicroBatcher(self.pool, backbone, self.limits, self.metrics)
        return self.batchers[backbone]

    async def close(self) -> None:
        for b in self.batchers.values():
            await b.close()
        if self.outcome_log is not None:  # after the batchers: their last rows are in it
            await self.outcome_log.close()

    def _validate(self, request: inf.ClassifyRequest) -> None:
        if not request.rows:
            raise InvalidArgument("rows is empty: send at least one (prompt, text) row")
        n = sum(1 + len(row.ensemble) for row in request.rows)  # each ensemble member is a row of work
        self.config.limits.check("classify_rows", n, "rows (ensemble members counted)")
        for i, row in enumerate(request.rows):
            self._check_text(row.text, f"rows[{i}].text")
            for ref in (row.prompt, *row.ensemble):
                parse_ref(ref)  # raises INVALID_ARGUMENT naming the bad reference

    def _check_text(self, text: str, what: str) -> None:
        if not text.strip():
            raise InvalidArgument(f"{what} is empty")
        self.config.limits.check_text(text, what)

    def _bytes(self, sha: str) -> bytes:
        data = self.tensors.get(sha)
        if data is None:  # evicted between resolve and use: resolve put it there moments ago
            raise Unavailable(f"prompt {sha[:12]} left the coordinator's cache; retry the request")
        return data

    async def resolve(self, refs: set[str]) -> dict[str, Route]:
        """Resolve refs (with an alias's shadow and canary) on a reader thread (never behind the writer).
        Resolutions are cached until the catalog generation moves (an alias move, a new or deleted version, a
        rollout change, by any coordinator); prompt bytes are read only for hashes not cached here."""
        known, known_gen = self._resolved, self._generation

        def q(s: Tx) -> tuple[int, dict[str, Route], dict[str, bytes]]:
            gen = catalog.generation(s)
            cached = known if gen == known_gen else {}
            out: dict[str, Route] = {}
            fetched: dict[str, bytes] = {}
            for ref in refs:
                if ref in cached:
                    out[ref] = cached[ref]
                    continue
                out[ref] = rollouts.resolve_route(s, ref)
            for r in (v for route in out.values() for v in served_by(route)):  # bytes not cached: read by hash
                if r.sha256 not in fetched and r.sha256 not in self.tensors:
                    fetched[r.sha256] = catalog.tensor_by_sha(s, r.sha256)
            return gen, out, fetched

        gen, resolved, fetched = await self.db.read(q)
        for sha, data in fetched.items():
            self.tensors.put(sha, data)
        if gen > self._generation or len(self._resolved) >= RESOLVED_MAX:
            self._resolved, self._generation = {}, gen
        if gen == self._generation:  # a call that read an older generation than another's caches nothing
            self._resolved.update(resolved)
        hits = sum(1 for ref in refs if known.get(ref) is resolved[ref])
        self.resolutions += len(refs)
        self.resolution_hits += hits
        self.metrics.lookups("resolution", hits, len(refs) - hits)
        shas = {r.sha256 for route in resolved.values() for r in served_by(route)}
        self.metrics.lookups("tensor", len(shas - fetched.keys()), len(fetched))
        for ref, route in resolved.items():
            for r in served_by(route):
                live = self.pool.get(r.backbone).info.fingerprint
                if live != r.fingerprint:
                    raise FailedPrecondition(
                        f"prompt {ref!r} ({r.version}) was trained on backbone {r.backbone!r} with fingerprint "
                        f"{r.fingerprint[:12]}, but the served backbone has fingerprint {live[:12]}; retrain or "
                        f"import it"
                    )
        return resolved

    async def Classify(self, request: inf.ClassifyRequest, context: grpc.aio.ServicerContext) -> inf.ClassifyResponse:
        self._validate(request)
        routes = await self.resolve({ref for row in request.rows for ref in (row.prompt, *row.ensemble)})
        plans = [rollout.plan(i, row, routes, self.config.outcomes) for i, row in enumerate(request.rows)]
        groups: dict[str, list[tuple[int, int]]] = {}  # backbone -> [(row, member)]; a shadow is one more member
        for i, p in enumerate(plans):
            for j, m in enumerate(p.scored):
                groups.setdefault(m.backbone, []).append((i, j))

        async def run(backbone: str, slots: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[list[float]]]:
            rs = [plans[i].scored[j] for i, j in slots]
            rows = [(r.row_key, request.rows[i].text) for r, (i, _) in zip(rs, slots, strict=True)]
            tokens = sum(estimate_tokens(request.rows[i].text, r.n_virtual) for r, (i, _) in zip(rs, slots, strict=True))
            out = await self.batcher(backbone).submit(  # keyed by prompt *and* task (ServedVersion.row_key)
                rows, {r.row_key: self._bytes(r.sha256) for r in rs}, {r.row_key: r.task for r in rs}, tokens
            )
            return slots, out

        probs: dict[tuple[int, int], list[float]] = {}
        for slots, logits in await asyncio.gather(*[run(b, s) for b, s in groups.items()]):
            for slot, row_logits in zip(slots, logits, strict=True):
                probs[slot] = softmax(row_logits)
        results, served = [], []
        for i, p in enumerate(plans):
            ms = p.members  # the version answering, then ensemble members
            avg = [sum(col) / len(ms) for col in zip(*(probs[(i, j)] for j in range(len(ms))), strict=True)]
            results.append(to_result(ms, avg, p.result_id, p.canary))
            if p.result_id:
                shadow = probs[(i, len(ms))] if p.shadow is not None else None
                served.append(p.served_row(argmax(avg), argmax(shadow) if shadow is not None else -1))
        if served and self.outcome_log is not None:
            self.outcome_log.add(served)
        canaries = sum(p.canary for p in plans)
        shadows = sum(p.shadow is not None for p in plans)
        for route, n in (("primary", len(plans) - canaries), ("canary", canaries), ("shadow", shadows)):
            if n:
                self.metrics.routed_rows.labels(route).inc(n)
        return inf.ClassifyResponse(results=results)

    async def Generate(
        self, request: inf.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inf.GenerateResponse]:
        o = generate_options.options(request)
        messages = generate_options.chat(request, self.config.limits)
        bare = generate_options.backbone_name(request)
        if bare:
            auth.require(auth.BARE_BACKBONE_ROLE, "Generate with a backbone alone (no prompt)")
            if bare not in self.pool.backbones and not await self.db.read(lambda s: catalog.find_backbone(s, bare)):
                raise NotFound(f"backbone {bare!r} is not served here (serving: "
                               f"{', '.join(sorted(self.pool.backbones)) or 'none'})")
            backbone, key, prompts, what = bare, "", {}, f"backbone {bare!r}"
        else:
            parse_ref(request.prompt)
            r = (await self.resolve({request.prompt}))[request.prompt].primary  # a generation answers as the alias
            backbone, key, prompts = r.backbone, r.sha256, {r.sha256: self._bytes(r.sha256)}
            what = f"prompt {request.prompt!r} is on backbone {r.backbone!r}, which"
        served = self.pool.get(backbone)
        if served.info.architecture not in GENERATIVE:
            raise FailedPrecondition(f"{what} ({served.info.architecture}) cannot generate; use a causal-LM or "
                                     f"seq2seq backbone")
        text = request.text
        if messages:
            template = await self.chat_templates.get(served.spec.model, served.spec.revision)
            if template is None:
                raise FailedPrecondition(f"backbone {backbone!r} has no chat template (its tokenizer's files name "
                                         f"none); send text instead of messages")
            text = template.render(messages)
        call = generate_options.worker_request(key, prompts, text, o)
        await accepted(context)  # a REST stream opens now, while the row may wait on its replica
        last = None
        async with contextlib.aclosing(self.pool.generate(backbone, call)) as pieces:  # a caller gone ends it now
            async for piece in pieces:
                if piece.text:
                    yield inf.GenerateResponse(text=piece.text)
                if piece.finish_reason is not None:
                    last = piece
        yield generate_options.last_message(last)


def served_by(route: Route) -> list[Resolved]:
    """Every version a route may score: its own, its shadow's and its canary's."""
    return [v for v in (route.primary, route.shadow, route.canary) if v is not None]


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exp = [math.exp(x - top) for x in logits]
    z = sum(exp)
    return [e / z for e in exp]


def argmax(probs: list[float]) -> int:
    return max(range(len(probs)), key=probs.__getitem__)


def to_result(members: list[Resolved], probs: list[float], result_id: str = "", canary: bool = False
              ) -> inf.ClassifyResult:
    labels = members[0].task.labels
    return inf.ClassifyResult(
        version=members[0].version, label=labels[argmax(probs)],
        scores=[inf.LabelScore(label=lab, score=p) for lab, p in zip(labels, probs, strict=True)],
        versions=[m.version for m in members] if len(members) > 1 else [], id=result_id, canary=canary,
    )
