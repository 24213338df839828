"""Continuous batching of Generate on one replica (Orca-style iteration-level scheduling, as vLLM, TGI, LoRAX).

One decode thread per replica holds the running batch. Each iteration: rows whose caller went leave; requests
at the head of a FIFO queue join while the batch has room (`max_seqs` rows, `max_cached_tokens` key/value
positions: rows x the longest row's reserved length); the joining rows are prefilled together (in chunks of
`prefill_positions`) and draw their first token; then one decode step runs every running row's last token
through the model at once and draws each row's next token on its own sampler. Rows that finish leave at once.

Rows of any prompts share every step: an input prompt's vectors and a deep prompt's key/value prefix enter at
prefill (build_batch) and from then on are ordinary cached positions in the row's slab row
(workers/kv_slab.py), so a step needs one token per row, its position, and the mask over each row's cache.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count

import torch

from promptbank_api.errors import ResourceExhausted, Unavailable
from workers import context
from workers.backbone import CAUSAL_LM, FrozenBackbone
from workers.deep_prompt import capturing, decoding, prefixes
from workers.kv_slab import KVSlab
from workers.protocol import GeneratePiece, GenerateRequest, GenerationSettings, GenerationStats
from workers.sampling import Sampler, pick_rows
from workers.soft_prompt import RowPrompt, bare, build_batch, prompt_length
from workers.text_stream import TextStream

log = logging.getLogger("promptbank.worker")
GONE_MAX = 4096  # ids cancelled before their request arrived, remembered (oldest forgotten first)
WAITS_MAX = 4096  # queue waits kept for the next stats call


def unsupported(bb: FrozenBackbone) -> str:
    """Why the engine cannot run `bb` ("" when it can); such backbones generate one sequence at a time."""
    cfg = bb.model.config
    if bb.architecture != CAUSAL_LM:
        return f"{bb.architecture} backbones decode one sequence at a time"
    if bb.deep is None:
        return "its attention cannot be wrapped (workers/deep_prompt.py)"
    if not bb.accepts_position_ids:
        return "it takes no position ids"
    if getattr(cfg, "sliding_window", None) or "sliding_attention" in (getattr(cfg, "layer_types", None) or ()):
        return "it has sliding-window attention"
    return ""


@dataclass(eq=False)
class _Row:
    key: str  # the request id, or a private one
    req: GenerateRequest
    prompt: RowPrompt
    ids: list[int]  # the text's tokens
    need: int  # cache positions it may reach: prompt + text + max_new_tokens (within the backbone's)
    sampler: Sampler
    text: TextStream
    submitted: float
    out: queue.SimpleQueue[GeneratePiece | BaseException] = field(default_factory=queue.SimpleQueue)
    length: int = 0  # valid cache positions
    last: int = -1  # the last drawn token: the next step's input
    generated: int = 0
    cancel: bool = False
    done: bool = False


class Engine:
    def __init__(self, bb: FrozenBackbone, settings: GenerationSettings):
        why = unsupported(bb)
        if why:
            raise ValueError(f"continuous batching cannot run backbone {bb.info.model!r}: {why}")
        assert bb.deep is not None
        self.bb, self.s = bb, settings
        self.device = bb.embed.weight.device
        self.slab = KVSlab(bb.deep, bb.embed.weight.dtype, self.device)
        self.keep_last = "logits_to_keep" in inspect.signature(bb.model.forward).parameters
        self.cond = threading.Condition()
        self.queue: deque[_Row] = deque()
        self.running: list[_Row] = []  # row r sits in slab row r
        self.live: dict[str, _Row] = {}  # queued and running, by key
        self.gone: OrderedDict[str, None] = OrderedDict()
        self.waits: deque[float] = deque(maxlen=WAITS_MAX)
        self.generated = self.cancelled = self.steps = 0
        self._ids = count()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- callers' side (any thread) ----

    def submit(self, req: GenerateRequest, prompt: RowPrompt | None) -> Iterator[GeneratePiece]:
        """Queue a request; returns its pieces as they are drawn. RESOURCE_EXHAUSTED now when it could never
        fit the cache; a request whose id was cancelled before it arrived finishes "cancelled" at once."""
        bb = self.bb
        p = bare(bb) if prompt is None else prompt
        ids = context.text_ids(bb, p, req.text, req.max_new_tokens)  # refused now if it cannot finish
        need = prompt_length(p) + len(ids) + req.max_new_tokens
        if need > self.s.max_cached_tokens:
            raise ResourceExhausted(f"this generation needs {need} cached tokens (prompt + text + max_new_tokens), "
                                    f"more than a replica holds: --generate-max-cached-tokens "
                                    f"{self.s.max_cached_tokens}; send a shorter text or fewer max_new_tokens")
        row = _Row(req.request_id, req, p, ids, need, Sampler(req.temperature, req.top_k, req.top_p, req.seed),
                   TextStream(bb.tokenizer, tuple(req.stop)), time.monotonic())
        with self.cond:
            if self._closed:
                raise Unavailable("the replica is shutting down; retry the request")
            if row.key and row.key in self.gone:
                self.gone.pop(row.key)
                row.out.put(GeneratePiece(finish_reason="cancelled", prompt_tokens=len(ids)))
                return self._pieces(row)
            if not row.key or row.key in self.live:
                row.key = f"{row.key}#{next(self._ids)}"
            self.live[row.key] = row
            self.queue.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="generate-engine", daemon=True)
                self._thread.start()
            self.cond.notify()
        return self._pieces(row)

    def _pieces(self, row: _Row) -> Iterator[GeneratePiece]:
        finished = False
        try:
            while True:
                item = row.out.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
                if item.finish_reason is not None:
                    finished = True
                    return
        finally:
            if not finished:  # the consumer stopped reading: its row leaves at the next step
                self.cancel(row.key)

    def cancel(self, request_id: str) -> bool:
        """The row of `request_id` leaves: at once when still queued, at the next step when running. True when
        such a row was queued or running; else the id is remembered in case its request arrives later."""
        with self.cond:
            row = self.live.get(request_id)
            if row is None:
                self.gone[request_id] = None
                while len(self.gone) > GONE_MAX:
                    self.gone.popitem(last=False)
                return False
            if row in self.queue:
                self.queue.remove(row)
                self._finish(row, "cancelled")
            else:
                row.cancel = True
                self.cond.notify()
            return True

    def stats(self) -> GenerationStats:
        with self.cond:
            waits = tuple(self.waits)
            self.waits.clear()
            oldest = time.monotonic() - self.queue[0].submitted if self.queue else 0.0
            return GenerationStats(running=len(self.running), queued=len(self.queue), oldest_queued_s=oldest,
                                   cached_tokens=self.slab.cells(),
                                   generated_tokens=self.generated, cancelled=self.cancelled, queue_waits=waits)

    def close(self) -> None:
        with self.cond:
            self._closed = True
            self.cond.notify()

    # ---- the decode thread ----

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cond:
                    while not self._closed and not self.queue and not self.running:
                        self.cond.wait()
                    if self._closed:
                        break
                    gone = [r for r in self.running if r.cancel]
                    joining = self._admit(len(self.running) - len(gone))
                for r in gone:
                    self._finish(r, "cancelled")
                self._leave(gone)
                try:
                    if joining:
                        self._prefill(joining)
                    if self.running:
                        self._step()
                except Exception as exc:  # noqa: BLE001 - a failed step fails its rows, not the replica
                    log.exception("a generation step failed; its %d rows end with the error", len(self.running))
                    for r in [*self.running, *joining]:
                        if not r.done:
                            self._fail(r, exc)
                    self.running = []
                    self.slab.release()
        with self.cond:
            for r in [*self.queue, *self.running]:
                self._fail(r, Unavailable("the replica is shutting down; retry the request"))

    def _admit(self, running: int) -> list[_Row]:
        """Queued rows that join now, strictly in arrival order (the head waits until it fits: no starvation)."""
        out: list[_Row] = []
        longest = max((r.need for r in self.running if not r.cancel), default=0)
        now = time.monotonic()
        while self.queue and running + len(out) < self.s.max_seqs:
            head = self.queue[0]
            t = max(longest, head.need)
            if (running + len(out) + 1) * t > self.s.max_cached_tokens:
                break
            out.append(self.queue.popleft())
            longest = t
            self.waits.append(now - head.submitted)
        return out

    def _prefill(self, rows: list[_Row]) -> None:
        longest = max(r.need for r in [*self.running, *rows])
        self.slab.reserve(len(self.running) + len(rows), longest, self.s.max_cached_tokens, self.s.max_seqs)
        chunk: list[_Row] = []
        width = 0
        for r in rows:
            w = max(width, prompt_length(r.prompt) + len(r.ids))
            if chunk and (len(chunk) + 1) * w > self.s.prefill_positions:
                self._prefill_chunk(chunk)
                chunk, w = [], prompt_length(r.prompt) + len(r.ids)
            chunk.append(r)
            width = w
        if chunk:
            self._prefill_chunk(chunk)

    def _prefill_chunk(self, rows: list[_Row]) -> None:
        """One forward over the joining rows (left-padded): their keys and values go to the slab, and each draws
        its first token from its last position's logits. A row whose batch cannot be built fails alone."""
        bb = self.bb
        try:
            batch = build_batch(bb, [r.ids for r in rows], [r.prompt for r in rows], pad_left=True)
        except Exception as exc:  # noqa: BLE001 - find the row at fault
            if len(rows) == 1:
                self._fail(rows[0], exc)
                return
            for r in rows:
                self._prefill_chunk([r])
            return
        captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        kw = {"logits_to_keep": 1} if self.keep_last else {}
        with prefixes(batch.prefixes), capturing(captured):
            out = bb.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, use_cache=False, **kw)
        layout = self.slab.layout
        order = sorted(layout.slots.items(), key=lambda kv: kv[1])
        own = [torch.stack(captured[m]) for m, _ in order]  # per layer (2, B, kv_heads, T, head_dim), on its device
        T = own[0].shape[3]
        n_own = batch.attention_mask.sum(dim=1).tolist()
        pre = batch.prefixes
        if pre is not None:
            P = pre.keep.shape[1]
            pkv = pre.kv.view(layout.n_slots, 2, len(rows), layout.kv_heads, P, layout.head_dim)
            n_pre = pre.keep.sum(dim=1).tolist()
        for i, r in enumerate(rows):
            slot = len(self.running)
            p = int(n_pre[i]) if pre is not None else 0
            if p:
                self.slab.write(slot, list(pkv[:, :, i, :, P - p :].unbind(0)))
            n = int(n_own[i])
            self.slab.write(slot, [layer[:, i, :, T - n :] for layer in own], at=p)
            r.length = p + int(n_own[i])
            self.running.append(r)
        self.slab.rows = len(self.running)
        tokens = pick_rows(out.logits[:, -1], [r.sampler for r in rows])
        self._leave([r for r, t in zip(rows, tokens, strict=True) if self._advance(r, t)])

    def _step(self) -> None:
        """One token for every running row."""
        rows = self.running
        ids = torch.tensor([[r.last] for r in rows], device=self.device)
        lengths = torch.tensor([r.length for r in rows])
        self.slab.begin(lengths)
        kw = {"logits_to_keep": 1} if self.keep_last else {}
        with decoding(self.slab):
            out = self.bb.model(input_ids=ids, position_ids=lengths.view(-1, 1).to(self.device), use_cache=False,
                                **kw)
        for r in rows:
            r.length += 1
        self.steps += 1
        tokens = pick_rows(out.logits[:, -1], [r.sampler for r in rows])
        self._leave([r for r, t in zip(list(rows), tokens, strict=True) if self._advance(r, t)])

    def _advance(self, r: _Row, token: int) -> bool:
        """Take a row's drawn token; True when the row is finished."""
        if token == self.bb.tokenizer.eos_token_id:
            self._finish(r, "eos")
            return True
        r.generated += 1
        r.last = token
        self.generated += 1
        piece = r.text.push(token)
        if r.text.stopped:
            self._finish(r, "stop", piece)
        elif r.generated >= r.req.max_new_tokens or r.length >= self.bb.max_positions:
            self._finish(r, "length", piece)
        elif piece:
            r.out.put(GeneratePiece(piece))
        return r.done

    def _finish(self, r: _Row, reason: str, piece: str = "") -> None:
        if reason in ("length", "eos"):
            piece += r.text.flush()
        r.out.put(GeneratePiece(piece, finish_reason=reason, prompt_tokens=len(r.ids), generated_tokens=r.generated))
        self._done(r, cancelled=reason == "cancelled")

    def _fail(self, r: _Row, exc: BaseException) -> None:
        r.out.put(exc)
        self._done(r)

    def _done(self, r: _Row, cancelled: bool = False) -> None:
        r.done = True
        with self.cond:
            self.live.pop(r.key, None)
            self.cancelled += cancelled

    def _leave(self, rows: list[_Row]) -> None:
        """Finished rows leave the batch; the last row takes each freed slab row (one row's copy)."""
        if not rows:
            return
        at = {id(r): i for i, r in enumerate(self.running)}
        for slot in sorted((at[id(r)] for r in rows if id(r) in at), reverse=True):
            last = len(self.running) - 1
            if slot != last:
                moved = self.running[last]
                self.slab.move(last, slot, moved.length)
                self.running[slot] = moved
            self.running.pop()
        self.slab.rows = len(self.running)
        if not self.running:
            self.slab.release()
