"""A careful new user's cases, run against one real coordinator, each judged by the same rules (issue 31).

    .venv/bin/python scripts/careful_user.py [--out docs/careful-user-cases.md] [--only WORD]

It builds two tiny random backbones from configs (an encoder and a causal LM, as the tests do: `train` and
`classify` finish in seconds), starts `python -m coordinator` with auth off and an embedded SQLite bank in a temp
dir, trains one prompt on each, then runs the cases of scripts/careful_cases.py as a new user would: `promptbank`
subprocesses (some in shell pipes), `promptbank.Client` calls, HTTP to --http-port with urllib, and `promptbank
serve` with bad flags. Each case names what it expects (success, or an error that names certain words, with an
exit code, HTTP status or exception class: exit 2 when the CLI must catch the mistake itself, exit 1 when the
server may refuse it, or the CLI before sending); the verdict is computed here from what was observed:

  FAIL 8  a Python traceback on stderr, or INTERNAL/UNKNOWN/HTTP 500, or an SDK exception that is not one of ours
  FAIL 9  an error taken as success (exit 0, 2xx, no exception), or a success whose output changed a value
  FAIL 11 an error whose message does not name the offending flag/field/value
  FAIL 12 a raw `[Errno N]` text, a wrong exit code/status, or non-0 for a success
  FAIL 13 no answer within the case's time (waiting without a word)
  PASS    otherwise

The table goes to --out (generated: the command, date and commit at the top) with counts by class.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

BIN = Path(sys.executable).with_name("promptbank")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
       "RAY_ADDRESS": "", "RAY_worker_niceness": "0", "PYTHONPATH": str(ROOT)}
CLASSES = {8: "tracebacks or INTERNAL reach the user", 9: "values silently changed or dropped (or errors taken as "
           "success)", 10: "`latest` is not reserved", 11: "errors that do not name the problem",
           12: "one voice (raw [Errno N], exit codes)", 13: "waiting without a word"}


@dataclass
class Seen:
    """What one case observed, in its face's terms."""

    code: str  # "exit 2", "HTTP 400", "InvalidArgument", "ok", "timeout"
    failed: bool  # the face reported an error (exit != 0, status >= 400, an exception)
    message: str = ""  # stderr's last line, the exception's text or the JSON error's message
    stderr: str = ""
    stdout: str = ""
    value: Any = None  # the SDK call's result / the REST body
    foreign: bool = False  # an SDK exception of a class the SDK does not document (KeyError, AttributeError, ...)
    timed_out: bool = False


@dataclass
class Expect:
    """ok=True: success (stdout/the result holds `words`); ok=False: an error naming `words` (and `code`, when
    given: an exit code, HTTP status or exception class); ok=None: either, but an error must name `words`."""

    ok: bool | None
    words: tuple[str, ...] = ()
    code: int | str | None = None
    check: Callable[[Seen], str | None] | None = None  # a success's values: None when right, else what changed
    latest: bool = False  # the case is about the reserved `latest` (class 10 when it fails)


def ok(*words: str, check: Callable[[Seen], str | None] | None = None) -> Expect:
    return Expect(True, words, check=check)


def bad(*words: str, code: int | str | None = None, latest: bool = False) -> Expect:
    return Expect(False, words, code, latest=latest)


def either(*words: str) -> Expect:
    return Expect(None, words)


@dataclass
class Case:
    face: str  # cli, shell, sdk, rest, serve
    family: str  # train, classify, ..., serve
    shown: str  # the command as a user types it ($W: the work dir, $S: the server, $H: the HTTP URL)
    act: Callable[[Stack], Seen]
    expect: Expect
    seen: Seen | None = None
    verdict: tuple[str, int | None, str] = ("", None, "")


@dataclass
class Stack:
    """The coordinator under test and the user's work dir of files."""

    work: Path
    address: str = ""
    http: str = ""
    closed: str = ""  # an address where nothing listens
    proc: subprocess.Popen[bytes] | None = None
    names: dict[str, str] = field(default_factory=dict)  # things the cases made (job names, ...)

    def fill(self, text: str) -> str:
        return (text.replace("$W", str(self.work)).replace("$S", self.address).replace("$H", self.http)
                .replace("$CLOSED", self.closed).replace("$JOB", self.names.get("job", "jobs/none")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_process(argv: list[str], stack: Stack, timeout: float, stdin: bytes | None = None,
                env: dict[str, str] | None = None) -> Seen:
    """A process in its own session, killed with its children when it outlives `timeout`."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**ENV, "PROMPTBANK_SERVER": stack.address, **(env or {})}, cwd=stack.work,
                            start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Seen("timeout", True, f"no end within {timeout:g} s", err.decode(errors="replace"),
                    out.decode(errors="replace"), timed_out=True)
    stderr = err.decode(errors="replace")
    lines = stderr.strip().splitlines()
    return Seen(f"exit {proc.returncode}", proc.returncode != 0, lines[-1] if lines else "", stderr,
                out.decode(errors="replace"))


def verdict(case: Case, stack: Stack) -> tuple[str, int | None, str]:
    """PASS, or FAIL with the issue's class and why (see the module's docstring)."""
    s, e = case.seen, case.expect
    assert s is not None
    words = [stack.fill(w) for w in e.words]
    status = s.message.removeprefix("error: ")
    everything = f"{s.stderr}\n{s.message}"
    if "Traceback (most recent call last)" in everything:
        return "FAIL", 8, "a traceback reached the user"
    if s.foreign:
        return "FAIL", 8, f"a raw {s.code} escaped the SDK"
    if s.code in ("HTTP 500", "Internal", "Unknown") or status.startswith(("INTERNAL:", "UNKNOWN:")):
        return "FAIL", 8, "INTERNAL/UNKNOWN reached the user"
    if "[Errno" in everything:
        return "FAIL", 12, "a raw [Errno N] text"
    if s.timed_out:
        return "FAIL", 13, s.message
    if s.failed and e.ok:
        return "FAIL", 12, f"{s.code} for a success: {s.message[:120]}"
    if not s.failed and e.ok is False:
        return "FAIL", 10 if e.latest else 9, f"{s.code}: the error was taken as success"
    if s.failed:
        codes = ("exit 1", "exit 2") if case.face == "cli" and e.code == 1 else (f"exit {e.code}", f"HTTP {e.code}")
        if e.code is not None and s.code not in (*codes, str(e.code)):
            return "FAIL", 12, f"{s.code}, not {e.code}"
        missing = [w for w in words if w.lower() not in s.message.lower()]
        if missing:
            return "FAIL", 10 if e.latest else 11, f"the message does not name {missing}"
        return "PASS", None, ""
    shown = f"{s.stdout}\n{s.stderr}\n{s.value!r}"
    missing = [w for w in words if w not in shown]
    if missing:
        return "FAIL", 9, f"the output does not hold {missing}"
    changed = e.check(s) if e.check else None
    if changed:
        return "FAIL", 9, changed
    return "PASS", None, ""


def start_server(stack: Stack) -> None:
    from tests.conftest import build_tiny_causal_lm, build_tiny_encoder

    models, data = stack.work / "models", stack.work / "data"
    data.mkdir(parents=True)
    enc, lm = build_tiny_encoder(models / "enc"), build_tiny_causal_lm(models / "lm")
    port, http = free_port(), free_port()
    stack.address, stack.http, stack.closed = f"127.0.0.1:{port}", f"http://127.0.0.1:{http}", f"127.0.0.1:{free_port()}"
    log = open(stack.work / "server.log", "wb")  # noqa: SIM115 - the server's, open while it runs
    stack.proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator", "--port", str(port), "--http-port", str(http), "--db",
         str(stack.work / "bank.db"), "--backbone", f"enc={enc}", "--backbone", f"lm={lm}", "--data-root", str(data),
         "--model-root", str(models), "--worker-cpus", "0.5", "--grace", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    from promptbank import Client

    with Client(stack.address, timeout=60) as c:
        c.wait_ready(timeout=180)


def stop_server(stack: Stack) -> None:
    if stack.proc is not None and stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGTERM)
        try:
            stack.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.proc.pid, signal.SIGKILL)


def cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())[:160]


def report(cases: list[Case], out: Path, argv: list[str], seconds: float) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    fails = Counter(c.verdict[1] for c in cases if c.verdict[0] == "FAIL")
    faces = Counter(c.face for c in cases)
    passed = sum(c.verdict[0] == "PASS" for c in cases)
    lines = [
        "# A careful user's cases (generated)",
        "",
        f"Generated by `{' '.join(['python scripts/careful_user.py', *argv])}` on "
        f"{datetime.date.today().isoformat()} at commit `{commit.strip()}` ({seconds:.0f} s). Do not edit by hand: "
        "rerun the script. `$W` is the user's work dir, `$S` the coordinator's gRPC address (also "
        "`PROMPTBANK_SERVER`), `$H` its HTTP URL, `$CLOSED` a port where nothing listens. The rules are in the "
        "script's docstring; each verdict is computed from what the case observed.",
        "",
        f"**{len(cases)} cases** ({', '.join(f'{n} {f}' for f, n in sorted(faces.items()))}): **{passed} PASS**, "
        f"**{len(cases) - passed} FAIL**.",
        "",
        "| class | what | FAIL |",
        "|---|---|---|",
        *(f"| {k} | {v} | {fails.get(k, 0)} |" for k, v in CLASSES.items()),
        "",
        "| # | face | family | command | expected | observed | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        e, s = c.expect, c.seen
        assert s is not None
        want = ("success" if e.ok else "error" if e.ok is False else "either") + \
            (f" {e.code}" if e.code is not None else "") + (f" naming {', '.join(map(repr, e.words))}" if e.words else "")
        said = s.code + (f": {s.message}" if s.failed and s.message else "")
        v = c.verdict[0] + (f" ({c.verdict[1]}: {c.verdict[2]})" if c.verdict[0] == "FAIL" else "")
        lines.append(f"| {i} | {c.face} | {c.family} | `{cell(c.shown)}` | {cell(want)} | {cell(said)} | {cell(v)} |")
    out.write_text("\n".join(lines) + "\n")
    return f"{len(cases)} cases: {passed} PASS, {len(cases) - passed} FAIL " + \
        str({k: n for k, n in sorted(fails.items(), key=lambda kv: kv[0] or 0)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "careful-user-cases.md")
    ap.add_argument("--only", default="", help="run only the cases whose command holds this (no table written)")
    a = ap.parse_args()
    import careful_cases

    stack = Stack(Path(tempfile.mkdtemp(prefix="careful-")))
    t0 = time.monotonic()
    try:
        start_server(stack)
        careful_cases.prepare(stack)
        cases = [c for c in careful_cases.all_cases() if a.only in c.shown or a.only == c.family]
        for i, case in enumerate(cases, 1):
            case.seen = case.act(stack)
            case.verdict = verdict(case, stack)
            mark = "ok  " if case.verdict[0] == "PASS" else f"FAIL {case.verdict[1]}"
            print(f"{i:3} {mark} {case.shown[-110:]}" + (f"\n       {case.verdict[2][:200]}" if case.verdict[2] else ""),
                  flush=True)
    finally:
        stop_server(stack)
    if not a.only:
        print(report(cases, a.out, sys.argv[1:], time.monotonic() - t0))
    shutil.rmtree(stack.work, ignore_errors=True)
    return 0 if all(c.verdict[0] == "PASS" for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
