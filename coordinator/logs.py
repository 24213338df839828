"""The coordinator's log lines: text for a terminal, or JSON (one object per line) for a log pipeline.

A JSON line has `time`, `level`, `logger` and `message`, and, when the line was written while serving an RPC,
the `rpc`, the `principal` (a token's name, never its secret) and the `request_id` or `job` the call names:
the RPC interceptor in coordinator/metrics.py opens a `Call` for each RPC, and auth notes its principal there.
The scheduler names the jobs it is running in `job`. Every line of either format passes
`Scrubber` first, which masks the configured secrets, bearer values and URL passwords, so a secret that
slips into a message or a traceback still never reaches the log.

Messages carry what callers sent (names, ids, paths), so neither format lets one forge a line: a text line has
its control characters escaped (`TextFormatter`: a newline is `\\n`, an ANSI escape `\\x1b`) and a traceback's
lines are indented under it; a JSON line escapes them in its strings, line separators included.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"


@dataclass
class Call:
    """What a log line written while serving an RPC says about it."""

    rpc: str  # "promptbank.v1.Inference/Classify"
    request_id: str = ""  # the request's AIP-155 request_id, when it has one
    job: str = ""  # the job the call names or created: "jobs/<id>"
    principal: str = ""  # the caller's token name, once auth has decided the call


call: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)
job: contextvars.ContextVar[str] = contextvars.ContextVar("job", default="")  # outside RPCs: the scheduler's jobs


def note_principal(name: str) -> None:
    """Auth decided the current call: its principal is `name` (a token's name)."""
    if (c := call.get()) is not None:
        c.principal = name


_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+(@)")
# what ends or rewrites a line somewhere: C0 controls but tab, DEL, C1 controls (NEL), Unicode line separators
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_JSON_RAW = str.maketrans({c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), 0x2028, 0x2029)})  # json.dumps keeps these
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class Scrubber(logging.Filter):
    """Masks secrets in a record's message, arguments and traceback: the secrets it was given (the admin token,
    the database password), anything after `Bearer `, and the password of a URL."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", _BEARER.sub(rf"\g<1>{MASK}", text))

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for key, value in vars(record).items():  # fields given with extra=...
            if key not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True


def escape(text: str) -> str:
    """`text` on one line, its control characters written as escapes (`\\n`, `\\r`, `\\x1b`, `\\u2028`)."""
    return _CONTROL.sub(_escaped, text)


def _escaped(m: re.Match[str]) -> str:
    c = m[0]
    return {"\n": "\\n", "\r": "\\r"}.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT lines whose message is escaped, so every line that starts at column 0 is a record's own; a
    traceback or stack follows on lines indented by two spaces, each escaped as well."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        out = escape(self.formatMessage(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if block:
                out += "".join(f"\n  {escape(line)}" for line in block.split("\n"))
        return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the RPC's context when the line was written while serving one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (c := call.get()) is not None:
            out.update((k, v) for k, v in (("rpc", c.rpc), ("principal", c.principal), ("request_id", c.request_id),
                                           ("job", c.job)) if v)
        if "job" not in out and (jobs := job.get()):
            out["job"] = jobs
        for key, value in vars(record).items():  # fields given with extra=... (code, duration_ms, ...)
            if key not in _RECORD_FIELDS and not key.startswith("_") and isinstance(value, str | int | float | bool):
                out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str).translate(_JSON_RAW)


def handler(fmt: str, secrets: Iterable[str] = (), stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `fmt` lines, secrets masked."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} must be one of {list(FORMATS)}")
    h = logging.StreamHandler(stream if stream is not None else sys.stderr)
    h.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    h.addFilter(Scrubber(secrets))
    return h


def setup(fmt: str, level: str, secrets: Iterable[str] = ()) -> None:
    """The process's logging: one handler on the root logger, at `level` (a no-op when it has one already)."""
    logging.basicConfig(level=level.upper(), handlers=[handler(fmt, secrets)])
