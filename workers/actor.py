"""The worker: one frozen backbone replica. Run as a Ray actor by the coordinator, or in-process by benches.

It receives prompts as safetensors bytes keyed by content hash and keeps decoded tensors in an LRU
bounded in bytes, so a hot prompt is decoded once per replica and never re-fetched.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch

from bank.codec import decode_prompt
from bank.errors import InvalidArgument
from workers.backbone import FrozenBackbone
from workers.generate import generate
from workers.grouping import forward_cost, length_groups
from workers.heads import Heads
from workers.soft_prompt import build_batch, tokenize
from workers.task import TaskSpec, TrainConfig
from workers.train import Event, Trainer, train_jobs


class MissingPrompts(KeyError):
    """The caller assumed prompts are cached here, but the LRU evicted them: send their bytes again."""

    def __init__(self, keys: list[str]):
        super().__init__(f"prompts not cached on this replica: {[k[:12] for k in keys]}")
        self.keys = keys


class PromptCache:
    """LRU of decoded prompts keyed by sha256, bounded by tensor bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            t = self._items.get(key)
            if t is not None:
                self._items.move_to_end(key)
            return t

    def put(self, key: str, t: torch.Tensor) -> None:
        size = t.numel() * t.element_size()
        with self._lock:
            if key in self._items or size > self.max_bytes:
                return
            self._items[key] = t
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)


class BackboneWorker:
    """One replica: classify mixed-task batches and train prompts on a frozen backbone."""

    def __init__(
        self,
        model: str,
        revision: str = "",
        num_threads: int = 0,
        cache_bytes: int = 256 << 20,
        chunk_rows: int = 64,
        chunk_tokens: int = 4096,
    ):
        self.chunk_rows, self.chunk_tokens = chunk_rows, chunk_tokens
        # Ray pins OMP_NUM_THREADS to the actor's num_cpus (1 by default): use the node's cores unless told.
        num_threads = num_threads or os.cpu_count() or 1
        torch.set_num_threads(num_threads)
        os.environ["OMP_NUM_THREADS"] = str(num_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bb = FrozenBackbone(model, revision)
        self.bb.model.to(self.device)
        self.heads = Heads(self.bb)
        self.cache = PromptCache(cache_bytes)
        self.anchor_cache = PromptCache(max(1 << 20, cache_bytes // 8))  # label texts read through a prompt
        self._cancelled: set[str] = set()

    def info(self) -> dict[str, Any]:
        i = self.bb.info
        return dict(model=i.model, revision=i.revision, architecture=i.architecture, hidden_size=i.hidden_size,
                    fingerprint=i.fingerprint, max_positions=i.max_positions, device=str(self.device),
                    threads=torch.get_num_threads())

    def check_task(self, task: dict[str, Any]) -> None:
        """Raise ConfigError now if the task cannot run here (e.g. label words sharing a first token)."""
        self.heads.labels_for(TaskSpec.from_dict(task))

    def parameter_digest(self) -> str:
        return self.bb.parameter_digest()

    def cached_prompts(self) -> list[str]:
        return self.cache.keys()

    def _prompt(self, key: str, prompts: dict[str, bytes]) -> torch.Tensor:
        t = self.cache.get(key)
        if t is None:
            if key not in prompts:
                raise MissingPrompts([key])
            t = decode_prompt(prompts[key]).to(self.device, self.bb.embed.weight.dtype)
            self.cache.put(key, t)
        return t

    def _anchors(self, key: str, task: TaskSpec, prompt: torch.Tensor) -> torch.Tensor | None:
        """The label anchors of prompt `key` (cached; None when its task scores against plain labels)."""
        if not self.heads.prompted_labels(task, prompt):
            return None
        ck = f"{key}:{json.dumps(task.label_texts)}"
        t = self.anchor_cache.get(ck)
        if t is None:
            t = self.heads.anchors(task, prompt)
            self.anchor_cache.put(ck, t)
        return t

    def classify(
        self,
        rows: list[tuple[str, str]],
        prompts: dict[str, bytes],
        tasks: dict[str, dict[str, Any]],
        max_length: int = 256,
    ) -> list[list[float]]:
        """rows: (prompt sha, text). Returns each row's class logits in its task's label order; tasks mix freely
        in each forward, whose rows are grouped by length (`length_groups`)."""
        specs = {k: TaskSpec.from_dict(v) for k, v in tasks.items()}
        missing = sorted({k for k, _ in rows if k not in prompts and self.cache.get(k) is None})
        if missing:
            raise MissingPrompts(missing)
        local = {k: self._prompt(k, prompts) for k in {k for k, _ in rows}}  # held for the whole call
        ids = tokenize(self.bb, [text for _, text in rows], max_length)
        out: list[list[float]] = [[] for _ in rows]
        with torch.inference_mode():
            anchors = {k: self._anchors(k, specs[k], local[k]) for k in local}
            lengths = [len(ids[i]) + local[k].shape[0] for i, (k, _) in enumerate(rows)]
            for idx in length_groups(lengths, forward_cost(self.device), self.chunk_rows, self.chunk_tokens):
                row_tasks = [specs[rows[i][0]] for i in idx]
                batch = build_batch(self.bb, [ids[i] for i in idx], [local[rows[i][0]] for i in idx])
                logits = self.heads.class_logits(row_tasks, self.heads.features(batch, row_tasks),
                                                 [anchors[rows[i][0]] for i in idx])
                for i, row in zip(idx, logits, strict=True):
                    out[i] = row.float().cpu().tolist()
        return out

    def train(
        self,
        job_id: str,
        task: dict[str, Any],
        examples: list[tuple[str, str]],
        config: dict[str, Any],
        init_prompt: bytes | None = None,
        resume: bytes | None = None,
    ) -> Iterator[Event]:
        """Stream one job's training events (Ray streaming generator)."""
        job = {"job_id": job_id, "task": task, "examples": examples, "config": config, "init_prompt": init_prompt,
               "resume": resume}
        yield from self.train_group([job])

    def train_group(self, jobs: list[dict[str, Any]]) -> Iterator[Event]:
        """Train several jobs together: each step is one forward/backward over a batch of every job.

        A job whose setup fails (bad labels, bad checkpoint) yields FAILED and the others go on. Each job
        stops at its next step after `cancel(job_id)`, keeping a final checkpoint.
        """
        trainers = []
        for j in jobs:
            self._cancelled.discard(j["job_id"])
            try:
                stored = decode_prompt(j["init_prompt"]) if j.get("init_prompt") else None
                trainers.append(Trainer(j["job_id"], self.heads, TaskSpec.from_dict(j["task"]), j["examples"],
                                        TrainConfig.from_dict(j["config"]), stored, j.get("resume")))
            except InvalidArgument as exc:
                yield {"kind": "FAILED", "job": j["job_id"], "error": f"{type(exc).__name__}: {exc}"}
        try:
            yield from train_jobs(self.heads, trainers, lambda job_id: job_id in self._cancelled)
        finally:
            for j in jobs:
                self._cancelled.discard(j["job_id"])

    def init_losses(self, task: dict[str, Any], examples: list[tuple[str, str]], candidates: dict[str, bytes],
                    max_length: int = 128) -> dict[str, float]:
        """Mean loss of the new task's examples under each stored prompt: lower = a better place to start."""
        spec = TaskSpec.from_dict(task)
        index = {label: k for k, label in enumerate(spec.labels)}
        y = torch.tensor([index[lab] for _, lab in examples], device=self.device)
        ids = tokenize(self.bb, [t for t, _ in examples], max_length)
        out = {}
        with torch.inference_mode():
            for name, data in candidates.items():
                prompt = decode_prompt(data).to(self.device, self.bb.embed.weight.dtype)
                if prompt.shape[1] != self.bb.hidden_size:
                    continue
                feats = self.heads.features_under(spec, prompt, ids)
                logits = self.heads.task_logits(spec, feats, self.heads.anchors(spec, prompt))
                out[name] = float(torch.nn.functional.cross_entropy(logits, y))
        return out

    def generate(
        self, key: str, prompts: dict[str, bytes], text: str, max_new_tokens: int = 32, temperature: float = 0.0,
        seed: int = 0,
    ) -> Iterator[str]:
        """Stream generated text pieces (Ray streaming generator)."""
        yield from generate(self.bb, self._prompt(key, prompts), text, max_new_tokens, temperature, seed)

    def cancel(self, job_id: str) -> None:
        self._cancelled.add(job_id)
