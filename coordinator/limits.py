"""Every input limit in one table: a default, a `promptbank serve` flag, and the status going over it gives.

AIP-193: too much of something is RESOURCE_EXHAUSTED; a malformed value is INVALID_ARGUMENT. Each check
runs in the coordinator before a worker sees the request. The flags are made from this table
(`--limit-classify-rows N`, ...), and docs/configuration.md lists it; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from promptbank_api.errors import ResourceExhausted


@dataclass(frozen=True)
class Limits:
    """Each field: the most a caller may send (all positive)."""

    classify_rows: int = 1024  # rows per Classify request, every ensemble member counted as a row
    text_chars: int = 20_000  # characters per text: Classify rows, Generate input, training examples
    train_examples: int = 1_000_000  # examples per train job or upload
    labels: int = 1_000  # labels per task
    label_chars: int = 200  # characters per label, label text or label word
    upload_bytes: int = 1 << 30  # bytes of one upload (its JSON lines as stored)
    upload_storage: int = 4 << 30  # bytes of all the uploads one principal has stored
    # One gRPC message a caller sends (enforced by gRPC itself, before the request is parsed). Sized to the largest
    # message the other limits allow: a Classify of classify_rows x text_chars at 4 bytes a character (UTF-8's
    # widest) is 1,024 x 20,000 x 4 = 78 MiB, a PEFT import at most 64 MiB (bank/peft_format.py); uploads stream
    # in chunks of any size, and larger inline train jobs go up as uploads. Raise it with those limits.
    message_bytes: int = 96 << 20
    rest_body_bytes: int = 4 << 20  # one REST/JSON body, but the bulk routes' (read only once the call is allowed)
    rest_bulk_bytes: int = 32 << 20  # one body of Classify, CreateTrainJob, ImportPromptVersion; one upload line

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {f.name}={value!r} must be a positive integer")

    def check(self, name: str, value: int, what: str) -> None:
        """RESOURCE_EXHAUSTED naming `what`, the amount and the limit (and its flag) when value is over it."""
        limit = getattr(self, name)
        if value > limit:
            raise ResourceExhausted(f"{what} is {value}; the limit is {limit} "
                                    f"(promptbank serve --limit-{name.replace('_', '-')})")

    def check_text(self, text: str, what: str) -> None:
        self.check("text_chars", len(text), f"{what}: characters")

    def check_task(self, labels: tuple[str, ...], *texts: tuple[str, ...]) -> None:
        """A task's labels and its label texts/words."""
        self.check("labels", len(labels), "labels in the task")
        for group in (labels, *texts):
            for item in group:
                self.check("label_chars", len(item), f"label {item[:40]!r}...: characters")


FLAGS = {f"--limit-{f.name.replace('_', '-')}": f.name for f in fields(Limits)}
LIMIT_HELP = {  # what each counts, and the status going over it gives (docs/configuration.md says the same)
    "classify_rows": "rows per Classify request, ensemble members counted (RESOURCE_EXHAUSTED)",
    "text_chars": "characters per text in Classify, Generate and training examples (RESOURCE_EXHAUSTED)",
    "train_examples": "examples per train job or upload (RESOURCE_EXHAUSTED)",
    "labels": "labels per task (RESOURCE_EXHAUSTED)",
    "label_chars": "characters per label, label text or label word (RESOURCE_EXHAUSTED)",
    "upload_bytes": "bytes of one upload as stored (RESOURCE_EXHAUSTED, while it streams)",
    "upload_storage": "bytes of all uploads one principal has stored (RESOURCE_EXHAUSTED)",
    "message_bytes": "bytes of one gRPC message a caller sends (RESOURCE_EXHAUSTED, from gRPC)",
    "rest_body_bytes": "bytes of one REST/JSON body, but the bulk routes' (RESOURCE_EXHAUSTED, HTTP 413)",
    "rest_bulk_bytes": "bytes of one REST/JSON body of Classify, CreateTrainJob or ImportPromptVersion, or of one "
                       "line of a JSON-lines upload (RESOURCE_EXHAUSTED, HTTP 413)",
}
