"""The worker: one frozen backbone replica. Run as a Ray actor by the coordinator, or in-process by benches.

It speaks only the typed contract of `workers.protocol`. It receives prompts as safetensors bytes keyed by
content hash and keeps decoded tensors in an LRU bounded in bytes, so a hot prompt is decoded once per
replica and never re-fetched.

The coordinator imports this module only to name the actor class, so everything that pulls in transformers
(the backbone, the heads, training, generation) is imported where a replica first uses it: a coordinator
starts seconds sooner and never loads a model library it does not run. Nor does a replica need Ray or the
bank's SQL to run: benches and GPU checks run it in process with only torch, transformers and the codec.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from bank.codec import read_prompt
from promptbank_api.errors import InvalidArgument
from promptbank_domain.task import TaskSpec
from workers.cache import LRU, tensor_bytes
from workers.grouping import forward_cost, length_groups
from workers.protocol import (
    BackboneInfo,
    CancelGenerationRequest,
    CancelRequest,
    CheckTaskRequest,
    ClassifyBatch,
    EventKind,
    GeneratePiece,
    GenerateRequest,
    GenerationSettings,
    GenerationStats,
    InitLossesRequest,
    MissingPrompts,
    TrainEvent,
    TrainRequest,
)

if TYPE_CHECKING:
    from workers.devices import Placement
    from workers.engine import Engine
    from workers.soft_prompt import RowPrompt

# Ray concurrency groups (coordinator/worker_client.py names the group of each call it makes)
GENERATE_GROUP = "generate"  # Generate calls (sized by GenerationSettings.calls)
CONTROL_GROUP = "control"  # cancel and stats: never behind busy inference or generation threads
CANCELLED_MAX = 4096  # one-at-a-time path: cancelled ids remembered (a cancel may overtake its request)


def concurrency_groups(settings: GenerationSettings) -> dict[str, int]:
    """The actor's concurrency groups besides the default one (`max_concurrency`: classify, train, ...)."""
    return {GENERATE_GROUP: settings.calls, CONTROL_GROUP: 2}


def _node_id() -> str:
    """The Ray node this process runs on, or "" when it runs outside Ray (tests, benches in-process)."""
    try:
        import ray
    except ImportError:  # a machine without Ray: in-process use only
        return ""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


class BackboneWorker:
    """One replica: classify mixed-task batches and train prompts on a frozen backbone."""

    def __init__(
        self,
        model: str,
        revision: str = "",
        num_threads: int = 0,
        cache_bytes: int = 256 << 20,
        generation: GenerationSettings | None = None,
        dtype: str = "auto",
        placement: Placement | None = None,
    ):
        # Ray pins OMP_NUM_THREADS to the actor's num_cpus (1 by default): use the node's cores unless told.
        num_threads = num_threads or os.cpu_count() or 1
        torch.set_num_threads(num_threads)
        os.environ["OMP_NUM_THREADS"] = str(num_threads)
        from workers.backbone import FrozenBackbone
        from workers.devices import plan
        from workers.heads import Heads

        self.generation = generation or GenerationSettings()
        # the serving dtype and devices; a GPU replica whose weights cannot fit refuses here, before loading
        placement = placement or plan(dtype, model, revision,
                                      self.generation.max_cached_tokens if self.generation.batching else 0)
        self.bb = FrozenBackbone(model, revision, placement=placement)  # read straight into dtype and devices
        self.device = self.bb.device
        self.heads = Heads(self.bb)
        self.cache: LRU[RowPrompt] = LRU(cache_bytes, tensor_bytes)
        self.anchor_cache: LRU[torch.Tensor] = LRU(max(1 << 20, cache_bytes // 8), tensor_bytes)  # label texts
        self._cancelled: set[str] = set()
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._gen_cancelled: OrderedDict[str, None] = OrderedDict()  # one-at-a-time path: ids to stop
        self._gen_live: set[str] = set()  # ... and ids decoding now

    def info(self) -> BackboneInfo:
        i = self.bb.info
        return BackboneInfo(model=i.model, revision=i.revision, architecture=i.architecture,
                            hidden_size=i.hidden_size, fingerprint=i.fingerprint, max_positions=i.max_positions,
                            device=str(self.device), threads=torch.get_num_threads(), node_id=_node_id(),
                            deep=self.bb.deep.shape if self.bb.deep else (0, 0, 0), pid=os.getpid(),
                            dtype=self.bb.dtype, devices=tuple(str(d) for d in self.bb.placement.devices))

    def check_task(self, req: CheckTaskRequest) -> None:
        """Raise ConfigError now if the task cannot run here (e.g. label words sharing a first token)."""
        self.heads.labels_for(req.task)

    def parameter_digest(self) -> str:
        return self.bb.parameter_digest()

    def cached_prompts(self) -> list[str]:
        return self.cache.keys()

    def _prompt(self, key: str, prompts: dict[str, bytes]) -> RowPrompt:
        t = self.cache.get(key)
        if t is None:
            if key not in prompts:
                raise MissingPrompts([key])
            from workers.soft_prompt import load_prompt

            t = load_prompt(self.bb, prompts[key])
            self.cache.put(key, t)
        return t

    def _anchors(self, key: str, task: TaskSpec, prompt: RowPrompt) -> torch.Tensor | None:
        """The label anchors of prompt `key` (cached; None when its task scores against plain labels)."""
        if not self.heads.prompted_labels(task, prompt):
            return None
        ck = f"{key}:{json.dumps(task.label_texts)}"
        t = self.anchor_cache.get(ck)
        if t is None:
            t = self.heads.anchors(task, prompt)
            self.anchor_cache.put(ck, t)
        return t

    def classify(self, batch: ClassifyBatch) -> list[list[float]]:
        """Each row's class logits in its task's label order; tasks mix freely in each forward, whose rows are
        grouped by length (`length_groups`) within the batch's caps, which the coordinator's batcher set."""
        from workers.soft_prompt import build_batch, prompt_length, tokenize

        rows = batch.rows
        missing = sorted({k for k, _ in rows if k not in batch.prompts and self.cache.get(k) is None})
        if missing:
            raise MissingPrompts(missing)
        local = {k: self._prompt(k, batch.prompts) for k in {k for k, _ in rows}}  # held for the whole call
        ids = tokenize(self.bb, [text for _, text in rows], batch.max_length)
        out: list[list[float]] = [[] for _ in rows]
        with torch.inference_mode():
            anchors = {k: self._anchors(k, batch.tasks[k], local[k]) for k in local}
            lengths = [len(ids[i]) + prompt_length(local[k]) for i, (k, _) in enumerate(rows)]
            for idx in length_groups(lengths, forward_cost(self.device), batch.max_rows, batch.max_positions):
                row_tasks = [batch.tasks[rows[i][0]] for i in idx]
                prompted = build_batch(self.bb, [ids[i] for i in idx], [local[rows[i][0]] for i in idx])
                logits = self.heads.class_logits(row_tasks, self.heads.features(prompted, row_tasks),
                                                 [anchors[rows[i][0]] for i in idx])
                for i, row in zip(idx, logits, strict=True):
                    out[i] = row.float().cpu().tolist()
        return out

    def train(self, job: TrainRequest) -> Iterator[TrainEvent]:
        """One job's events (in-process use: tests, benches)."""
        yield from self.train_group([job])

    def train_group(self, jobs: list[TrainRequest]) -> Iterator[TrainEvent]:
        """Train several jobs together (a Ray streaming generator): each step is one forward/backward over a
        batch of every job. A job whose setup fails (bad labels, bad checkpoint) yields FAILED and the others
        go on. Each job stops at its next step after `cancel(job_id)`, keeping a final checkpoint."""
        from workers.train import Trainer, train_jobs

        trainers = []
        for j in jobs:
            self._cancelled.discard(j.job_id)
            try:
                stored = read_prompt(j.init_prompt) if j.init_prompt else None
                trainers.append(Trainer(j.job_id, self.heads, j.task, j.examples, j.config, stored, j.resume))
            except InvalidArgument as exc:
                yield TrainEvent(EventKind.FAILED, j.job_id, error=f"{type(exc).__name__}: {exc}")
        try:
            yield from train_jobs(self.heads, trainers, lambda job_id: job_id in self._cancelled)
        finally:
            for j in jobs:
                self._cancelled.discard(j.job_id)

    def init_losses(self, req: InitLossesRequest) -> dict[str, float]:
        """Mean loss of the new task's examples under each stored prompt of `req.kind`, by name: lower = a better
        place to start."""
        from workers.soft_prompt import load_prompt, tokenize

        spec, examples, candidates, max_length, kind = req.task, req.examples, req.candidates, req.max_length, req.kind
        index = {label: k for k, label in enumerate(spec.labels)}
        y = torch.tensor([index[lab] for _, lab in examples], device=self.device)
        ids = tokenize(self.bb, [t for t, _ in examples], max_length)
        out = {}
        with torch.inference_mode():
            for name, data in candidates.items():
                try:
                    prompt = load_prompt(self.bb, data)
                except InvalidArgument:
                    continue  # stored for another width: not a place to start
                if prompt.kind != kind:
                    continue
                feats = self.heads.features_under(spec, prompt, ids)
                logits = self.heads.task_logits(spec, feats, self.heads.anchors(spec, prompt))
                out[name] = float(torch.nn.functional.cross_entropy(logits, y))
        return out

    def engine(self) -> Engine | None:
        """The continuous-batching engine, started on first use; None when batching is off or the backbone
        cannot run it (seq2seq: one sequence at a time)."""
        from workers.engine import Engine, unsupported

        if not self.generation.batching or unsupported(self.bb):
            return None
        with self._engine_lock:
            if self._engine is None:
                self._engine = Engine(self.bb, self.generation)
            return self._engine

    def generate(self, req: GenerateRequest) -> Iterator[GeneratePiece]:
        """Stream generated text pieces (Ray streaming generator); the last piece says why it ended. The row
        joins the replica's running batch, or (batching off, seq2seq) decodes alone on this call's thread."""
        prompt = self._prompt(req.key, req.prompts) if req.key else None
        engine = self.engine()
        if engine is not None:
            yield from engine.submit(req, prompt)
            return
        from workers.generate import generate

        rid = req.request_id
        self._gen_live.add(rid)
        try:
            yield from generate(self.bb, prompt, req.text, req.max_new_tokens, req.temperature, req.seed,
                                top_k=req.top_k, top_p=req.top_p, stop=tuple(req.stop),
                                cancelled=lambda: bool(rid) and rid in self._gen_cancelled)
        finally:
            self._gen_live.discard(rid)
            self._gen_cancelled.pop(rid, None)

    def cancel_generation(self, req: CancelGenerationRequest) -> bool:
        """The caller of `req.request_id` is gone: its row leaves at the next step. True when it was running or
        queued here (False: finished already, or not arrived yet; then it ends at once if it arrives)."""
        engine = self.engine()
        if engine is not None:
            return engine.cancel(req.request_id)
        self._gen_cancelled[req.request_id] = None
        while len(self._gen_cancelled) > CANCELLED_MAX:
            self._gen_cancelled.popitem(last=False)
        return req.request_id in self._gen_live

    def generation_stats(self) -> GenerationStats:
        """Running and queued rows, cache use, and the queue waits since the last call (the coordinator's
        metrics and autoscaler poll it)."""
        engine = self._engine
        return engine.stats() if engine is not None else GenerationStats(running=len(self._gen_live))

    def cancel(self, req: CancelRequest) -> None:
        self._cancelled.add(req.job_id)
