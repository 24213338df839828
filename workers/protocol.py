"""The worker contract: every value that crosses the Ray boundary between coordinator and workers.

The coordinator builds these, a `BackboneWorker` actor consumes them and answers with them; nothing crosses
as a string-keyed dict. The domain types they carry (task, training config; a job's stored spec) are
`promptbank_domain`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from promptbank_domain.kinds import UNMARKED
from promptbank_domain.task import TaskSpec
from promptbank_domain.train_config import TrainConfig

Example = tuple[str, str]  # (text, label)


class EventKind(StrEnum):
    """What a training event reports; the values are the API's `TrainJobEvent.Kind` names where one exists."""

    PROGRESS = "PROGRESS"  # a few steps done: loss, examples/s, ETA
    EVAL = "EVAL"  # an evaluation on the held-out split (metrics with standard errors)
    CHECKPOINT = "CHECKPOINT"  # resumable training state (safetensors bytes), stored by the coordinator
    RESULT = "RESULT"  # the job finished: the kept prompt and its metrics
    CANCELLED = "CANCELLED"  # stopped on request after a final checkpoint
    FAILED = "FAILED"  # the job could not run (bad labels, bad checkpoint, ...): `error` says why


@dataclass(frozen=True)
class BackboneInfo:
    """What a replica reports about the model it holds; versions pin `fingerprint`."""

    model: str
    revision: str
    architecture: str  # encoder | causal_lm | seq2seq | masked_lm
    hidden_size: int
    fingerprint: str
    max_positions: int
    device: str = "cpu"
    threads: int = 1
    node_id: str = ""  # the Ray node the replica runs on ("" outside Ray)
    deep: tuple[int, int, int] = (0, 0, 0)  # where deep prompts go: (layers, key/value heads, head width); 0s: none
    pid: int = 0  # the replica's process (a restarted replica has a new one; logs and fault tests tell them apart)
    dtype: str = "fp32"  # the serving dtype ("bf16", "fp16", "fp32"): `auto` as the replica resolved it
    devices: tuple[str, ...] = ("cpu",)  # where its layers are: one device, or the GPUs a split replica spans

    @property
    def deep_width(self) -> int:
        layers, heads, dim = self.deep
        return layers * 2 * heads * dim


@dataclass(frozen=True)
class TrainRequest:
    """One job handed to a replica: its data, and where to start (an init prompt or a checkpoint to resume)."""

    job_id: str
    task: TaskSpec
    config: TrainConfig
    examples: list[Example]
    init_prompt: bytes | None = None  # safetensors bytes of a stored prompt to start from
    resume: bytes | None = None  # safetensors bytes of the job's last checkpoint


@dataclass(frozen=True)
class TrainEvent:
    """One event of one job, streamed by `BackboneWorker.train_group` in step order."""

    kind: EventKind
    job: str
    step: int = 0
    total_steps: int = 0
    loss: float | None = None  # PROGRESS: the last step's training loss
    metrics: dict[str, float] = field(default_factory=dict)  # EVAL and RESULT
    examples_per_second: float = 0.0  # PROGRESS
    eta_seconds: float = 0.0  # PROGRESS
    epoch: int = 0  # PROGRESS: the epoch of the last step (0-based)
    stopped_early: bool = False  # EVAL: early stopping ends the job after this evaluation
    checkpoint: bytes = b""  # CHECKPOINT
    prompt: bytes = b""  # RESULT: the kept prompt as safetensors bytes
    error: str = ""  # FAILED


@dataclass(frozen=True)
class ClassifyBatch:
    """Rows of any tasks for one replica: (row key, text), a key naming a prompt and the task it is read under
    (coordinator side: `ServedVersion.row_key`; any opaque string). `prompts` carries the bytes of the prompts the
    replica was not sent before (it keeps the rest cached) and `tasks` every row's task, both by row key."""

    rows: list[tuple[str, str]]
    prompts: dict[str, bytes]
    tasks: dict[str, TaskSpec]
    max_length: int = 256
    # The forward caps: the replica runs the rows in length-grouped forwards of at most `max_rows` rows and
    # `max_positions` padded positions each. The coordinator sets them from its batching policy (BatchLimits in
    # coordinator/batcher.py); these defaults serve in-process callers (tests, benches) and equal its defaults.
    max_rows: int = 64
    max_positions: int = 4096


@dataclass(frozen=True)
class CheckTaskRequest:
    """`BackboneWorker.check_task`: can this task run on the replica's backbone (e.g. distinct label words)?"""

    task: TaskSpec


@dataclass(frozen=True)
class InitLossesRequest:
    """`BackboneWorker.init_losses`: score a new task's examples under stored prompts (`init_from="nearest"`)."""

    task: TaskSpec
    examples: list[Example]
    candidates: dict[str, bytes]  # version name -> safetensors bytes of a stored prompt
    kind: str = UNMARKED  # only stored prompts of this kind are scored
    max_length: int = 128


FINISH_REASONS = ("length", "stop", "eos", "cancelled")  # why a generation ended (its last piece says)


@dataclass(frozen=True)
class GenerateRequest:
    """`BackboneWorker.generate`: continue `text` under one prompt (or none), streamed piece by piece."""

    key: str  # the prompt's sha256; "" = a bare row (the backbone alone, no prompt)
    prompts: dict[str, bytes]  # its bytes by sha256, unless the replica holds them
    text: str
    max_new_tokens: int = 32
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0  # the row's own generator: its samples do not depend on its batch mates
    top_p: float = 1.0  # nucleus sampling; 1 = off
    top_k: int = 0  # 0 = off
    stop: tuple[str, ...] = ()  # the output ends before the first of these (not included)
    request_id: str = ""  # names the row for `cancel_generation`


@dataclass(frozen=True)
class GeneratePiece:
    """One streamed piece of a generation; the last one (and only it) carries `finish_reason` and the counts."""

    text: str = ""
    finish_reason: str | None = None  # one of FINISH_REASONS on the last piece
    prompt_tokens: int = 0  # tokens the model read before generating (the text's; a prompt's own excluded)
    generated_tokens: int = 0


@dataclass(frozen=True)
class CancelGenerationRequest:
    """`BackboneWorker.cancel_generation`: the caller of `request_id` is gone; its row leaves at the next step."""

    request_id: str


@dataclass(frozen=True)
class GenerationSettings:
    """How a replica runs Generate: the coordinator's --generate-* flags (coordinator/config.py)."""

    batching: bool = True  # continuous batching (workers/engine.py); False: one sequence at a time per call
    max_seqs: int = 64  # rows in the running batch at most; more wait in a FIFO queue
    max_cached_tokens: int = 16384  # key/value cache positions (rows x longest row) at most; a row that alone
    # needs more (prompt + text + max_new_tokens) is refused with RESOURCE_EXHAUSTED
    prefill_positions: int = 4096  # padded positions per prefill forward (joining rows are prefilled in chunks)

    @property
    def calls(self) -> int:
        """Generate calls a replica runs at once (its Ray concurrency group): the running batch and as many
        waiting to join; Ray queues any more. Batching off: 8 sequences decoding side by side (as before)."""
        return 2 * self.max_seqs if self.batching else 8

    def __post_init__(self) -> None:
        if not (self.max_seqs >= 1 and self.max_cached_tokens >= 1 and self.prefill_positions >= 1):
            raise ValueError(f"--generate-max-seqs {self.max_seqs} and --generate-max-cached-tokens "
                             f"{self.max_cached_tokens} must be >= 1")


@dataclass(frozen=True)
class GenerationStats:
    """`BackboneWorker.generation_stats`: the replica's generation engine now, and since its last call."""

    running: int = 0  # rows in the running batch
    queued: int = 0  # requests waiting to join it
    oldest_queued_s: float = 0.0  # how long the queue's head has waited so far
    cached_tokens: int = 0  # key/value positions allocated (rows x positions)
    generated_tokens: int = 0  # tokens generated since the replica started
    cancelled: int = 0  # rows removed because their caller went, since the replica started
    queue_waits: tuple[float, ...] = ()  # seconds each request waited before its prefill, since the last call


@dataclass(frozen=True)
class CancelRequest:
    """`BackboneWorker.cancel`: stop a training job at its next step, after a final checkpoint."""

    job_id: str


class MissingPrompts(KeyError):
    """The caller assumed prompts are cached on the replica, but its LRU evicted them: send their bytes again."""

    def __init__(self, keys: list[str]):
        super().__init__(f"prompts not cached on this replica: {[k[:12] for k in keys]}")
        self.keys = keys
