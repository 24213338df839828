"""Every input limit in one table: a default, a `promptbank serve` flag, and the status going over it gives.

AIP-193: too much of something is RESOURCE_EXHAUSTED; a malformed value is INVALID_ARGUMENT. Each check
runs in the coordinator before a worker sees the request. The flags are made from this table
(`--limit-classify-rows N`, ...), and docs/configuration.md lists it; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from promptbank_api.errors import InvalidArgument, ResourceExhausted


@dataclass(frozen=True)
class Limits:
    """Each field: the most a caller may send (all positive)."""

    classify_rows: int = 1024  # rows per Classify request, every ensemble member counted as a row
    text_chars: int = 20_000  # characters per text: Classify rows, Generate input, training examples
    chat_messages: int = 256  # messages per chat (Generate's `messages`, /v1/chat/completions)
    completion_prompts: int = 16  # prompts per /v1/completions request (each is its own generation)
    train_examples: int = 1_000_000  # examples per train job or upload
    labels: int = 1_000  # labels per task
    label_chars: int = 200  # characters per label, label text or label word
    upload_bytes: int = 1 << 30  # bytes of one upload (its JSON lines as stored)
    upload_storage: int = 4 << 30  # bytes of the uploads and unfinished jobs' inline examples one principal stores
    # One gRPC message a caller sends (enforced by gRPC itself, before the request is parsed). Sized to the largest
    # message the other limits allow: a Classify of classify_rows x text_chars at 4 bytes a character (UTF-8's
    # widest) is 1,024 x 20,000 x 4 = 78 MiB, a PEFT import at most 64 MiB (bank/peft_format.py); uploads stream
    # in chunks of any size, and larger inline train jobs go up as uploads. Raise it with those limits.
    message_bytes: int = 96 << 20
    rest_body_bytes: int = 4 << 20  # one REST/JSON body, but the bulk routes' (read only once the call is allowed)
    rest_bulk_bytes: int = 32 << 20  # one body of Classify, CreateTrainJob, ImportPromptVersion; one upload line
    # -- text fields of stored messages and per-principal streams (names and ids: promptbank_api/names.py)
    description_chars: int = 10_000  # characters of a task's description
    owner_chars: int = 128  # characters of a prompt's owner (a display field)
    tags: int = 64  # tags per prompt or version
    tag_chars: int = 128  # characters per tag
    job_aliases: int = 16  # aliases one train job names
    uri_chars: int = 4_096  # characters of a job's dataset.uri
    field_chars: int = 128  # characters of any other short text: request_id, revision, dataset columns, init...
    model_chars: int = 1_024  # characters of a model id or path (RegisterBackbone, an imported adapter's base model)
    watch_streams: int = 64  # WatchTrainJob streams one principal has open at once (per coordinator; a CI token
    # or, with auth off, every local caller together may follow dozens of jobs: 16 concurrent writers were seen)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {f.name}={value!r} must be a positive integer")
            if value > CEILINGS.get(f.name, value):
                raise ValueError(f"limit {f.name}={value} is above {CEILINGS[f.name]}, the width of the bank column "
                                 f"that stores it")

    def check(self, name: str, value: int, what: str) -> None:
        """RESOURCE_EXHAUSTED naming `what`, the amount and the limit (and its flag) when value is over it."""
        limit = getattr(self, name)
        if value > limit:
            raise ResourceExhausted(f"{what} is {value}; the limit is {limit} "
                                    f"(promptbank serve --limit-{name.replace('_', '-')})")

    def check_text(self, text: str, what: str) -> None:
        self.check("text_chars", len(text), f"{what}: characters")

    def check_chars(self, name: str, text: str, what: str) -> None:
        """RESOURCE_EXHAUSTED when `text` (called `what`) has more characters than limit `name` allows;
        INVALID_ARGUMENT when it holds a NUL, which no such field means (and PostgreSQL's text cannot store)."""
        self.check(name, len(text), f"{what}: characters")
        if "\x00" in text:
            raise InvalidArgument(f"{what} holds a NUL character")

    def check_tags(self, tags: Sequence[str], what: str) -> None:
        self.check("tags", len(tags), f"{what}: tags")
        for tag in tags:
            if not tag.strip():
                raise InvalidArgument(f"{what}: tag {tag!r} is empty; a tag needs a character other than white space")
            self.check("tag_chars", len(tag), f"{what}: tag {tag[:40]!r}...: characters")

    def check_task(self, labels: tuple[str, ...], *texts: tuple[str, ...]) -> None:
        """A task's labels and its label texts/words."""
        self.check("labels", len(labels), "labels in the task")
        for group in (labels, *texts):
            for item in group:
                self.check("label_chars", len(item), f"label {item[:40]!r}...: characters")


CEILINGS = {"owner_chars": 128, "field_chars": 128, "model_chars": 1_024}  # a limit may not pass its column's width
FLAGS = {f"--limit-{f.name.replace('_', '-')}": f.name for f in fields(Limits)}
LIMIT_HELP = {  # what each counts, and the status going over it gives (docs/configuration.md says the same)
    "classify_rows": "rows per Classify request, ensemble members counted (RESOURCE_EXHAUSTED)",
    "text_chars": "characters per text in Classify, Generate and training examples (RESOURCE_EXHAUSTED)",
    "chat_messages": "messages per chat: Generate's messages, /v1/chat/completions (RESOURCE_EXHAUSTED)",
    "completion_prompts": "prompts per /v1/completions request, each its own generation (RESOURCE_EXHAUSTED, "
                          "HTTP 429)",
    "train_examples": "examples per train job or upload (RESOURCE_EXHAUSTED)",
    "labels": "labels per task (RESOURCE_EXHAUSTED)",
    "label_chars": "characters per label, label text or label word (RESOURCE_EXHAUSTED)",
    "upload_bytes": "bytes of one upload as stored (RESOURCE_EXHAUSTED, while it streams)",
    "upload_storage": "bytes of the uploads and of unfinished jobs' inline examples one principal stores "
                      "(RESOURCE_EXHAUSTED)",
    "message_bytes": "bytes of one gRPC message a caller sends (RESOURCE_EXHAUSTED, from gRPC)",
    "rest_body_bytes": "bytes of one REST/JSON body, but the bulk routes' (RESOURCE_EXHAUSTED, HTTP 413)",
    "rest_bulk_bytes": "bytes of one REST/JSON body of Classify, CreateTrainJob or ImportPromptVersion, or of one "
                       "line of a JSON-lines upload (RESOURCE_EXHAUSTED, HTTP 413)",
    "description_chars": "characters of a task's description (RESOURCE_EXHAUSTED)",
    "owner_chars": "characters of a prompt's owner field, at most 128 (RESOURCE_EXHAUSTED)",
    "tags": "tags per prompt or version (RESOURCE_EXHAUSTED)",
    "tag_chars": "characters per tag (RESOURCE_EXHAUSTED)",
    "job_aliases": "aliases one train job names (RESOURCE_EXHAUSTED)",
    "uri_chars": "characters of a train job's dataset.uri (RESOURCE_EXHAUSTED)",
    "field_chars": "characters of any other short text field: request_id, a backbone's revision, dataset columns, "
                   "hyperparameter strings, task kind and pooling; at most 128 (RESOURCE_EXHAUSTED)",
    "model_chars": "characters of a model id or path, an imported adapter's base model; at most 1,024 "
                   "(RESOURCE_EXHAUSTED)",
    "watch_streams": "WatchTrainJob streams one principal has open at once on one coordinator (RESOURCE_EXHAUSTED)",
}
