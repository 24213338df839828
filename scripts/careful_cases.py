"""The careful user's cases for scripts/careful_user.py: the files a new user has at hand, and the faces
(CLI, shell pipes, SDK, REST, `serve`) each case runs through. The cases themselves are in
scripts/careful_cases_cli.py and scripts/careful_cases_api.py."""

from __future__ import annotations

import gzip
import json
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from careful_user import BIN, Case, Expect, Seen, Stack, run_process

import promptbank.errors as sdk_errors
from promptbank import Client
from promptbank.peft_files import write_adapter
from promptbank_api.errors import PromptBankError
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp

ROWS = [("a great movie", "pos"), ("an awful film", "neg"), ("loved every minute", "pos"), ("hated it", "neg"),
        ("fine fun", "pos"), ("a boring mess", "neg"), ("superb acting", "pos"), ("dull and slow", "neg")]
HP = jp.Hyperparameters(prompt_kind=cat.PROMPT_KIND_INPUT, num_virtual_tokens=4, max_steps=4, batch_size=4)


def _csv(rows: list[tuple[str, str]], sep: str = ",", head: str = "text,label", nl: str = "\n") -> bytes:
    return (nl.join([head.replace(",", sep), *(f"{t}{sep}{lab}" for t, lab in rows)]) + nl).encode()


def prepare(stack: Stack) -> None:
    """Files in the work dir, and a trained prompt on each backbone: t1 (encoder, alias prod) and g1 (causal LM)."""
    w = stack.work
    files: dict[str, bytes] = {
        "good.csv": _csv(ROWS), "data/good.csv": _csv(ROWS), "good.tsv": _csv(ROWS, "\t"),
        "good.jsonl": "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in ROWS).encode(),
        "good.json": json.dumps([{"text": t, "label": lab} for t, lab in ROWS]).encode(),
        "crlf.csv": _csv(ROWS, nl="\r\n"), "bom.csv": b"\xef\xbb\xbf" + _csv(ROWS),
        "uni.csv": _csv([("na\u00efve caf\u00e9 \U0001f600", "b\u00f6n"), ("\u4e2d\u6587", "neg")] * 4),
        "latin1.csv": "text,label\ncaf\u00e9 ok,pos\nbad,neg\n".encode("latin-1"),
        "dup.csv": b"text,label,label\na,pos,neg\n", "extra.csv": b"text,label\na,pos,x\n",
        "unclosed.csv": b'text,label\nfine,pos\n"open,neg\nmore,pos\n', "header.csv": b"text,label\n",
        "empty.csv": b"", "packed.csv": gzip.compress(_csv(ROWS * 50)), "wide.csv": b"a" * 5000 + b",b\n1,2\n",
        "nolabel.csv": b"text,y\na,1\nb,0\n", "num.csv": _csv([(t, "1" if lab == "pos" else "0") for t, lab in ROWS]),
        "blank.csv": _csv([*ROWS, ("no label here", "")]), "bad.json": b"{", "notes.txt": b"just some notes\n",
        "big.csv": _csv([(f"text number {i}", ("pos", "neg")[i % 2]) for i in range(25_000)]),
        "rows.jsonl": b'{"prompt": "t1", "text": "great"}\n{"text": "awful", "prompt": "g1"}\n',
        "rows_noprompt.jsonl": b'{"text": "x"}\n', "rows_bad.jsonl": b'{"prompt": "t1", "text": "x"}\n{"text"\n',
        "rows_num.jsonl": b'{"prompt": "t1", "text": 5}\n', "rows_empty.jsonl": b"", "rows_blank.jsonl": b"\n\n",
        "rows_list.jsonl": b"[1, 2]\n", "rows_latin1.jsonl": '{"prompt": "t1", "text": "caf\u00e9"}\n'.encode("latin-1"),
        "tok_empty": b"", "tok_bin": b"\xff\xfe\x00\x01", "not.pem": b"hello", "taken": b"x",
        "adapter_empty/.keep": b"", "adapter_bad/adapter_config.json": b"{",
        "adapter_bad/adapter_model.safetensors": b"garbage",
    }
    for name, body in files.items():
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        (w / name).write_bytes(body)
    (w / "adapter_empty/.keep").unlink()
    (w / "dir").mkdir()
    with Client(stack.address, timeout=60) as c:
        t1 = c.create_train_job("t1", "enc", ROWS, hyperparameters=HP, aliases=["prod"])
        g1 = c.create_train_job("g1", "lm", ROWS, labels=["neg", "pos"], label_words=["bad", "good"], hyperparameters=HP)
        for job in (t1, g1):
            done = c.wait_job(job.name, timeout=300)
            assert done.state == jp.TrainJob.SUCCEEDED, done.error
        stack.names["job"] = t1.name
        exported = c.export_version("t1/versions/1")
        write_adapter(w / "adapter", exported.adapter_config, exported.adapter_model)


# ---------------------------------------------------------------------------------------------------- faces


def cli(family: str, args: str, expect: Expect, timeout: float = 90, env: dict[str, str] | None = None) -> Case:
    """`promptbank ARGS` (shell quoting; $W, $S, ... filled in), PROMPTBANK_SERVER set to the coordinator."""
    def act(stack: Stack) -> Seen:
        if "$(" in args:  # a value the shell makes: `$(seq ...)`, `$(head -c ...)`
            argv = ["bash", "-c", f"exec {shlex.quote(str(BIN))} {stack.fill(args)}"]
        else:
            argv = [str(BIN), *shlex.split(stack.fill(args))]
        return run_process(argv, stack, timeout, env={k: stack.fill(v) for k, v in (env or {}).items()})
    return Case("cli", family, f"promptbank {args}", act, expect)


def shell(family: str, line: str, expect: Expect, timeout: float = 90) -> Case:
    """A bash pipeline whose first command is `promptbank ...`: its status (141 after SIGPIPE, as any shell tool
    that loses its reader) is the case's code."""
    def act(stack: Stack) -> Seen:
        seen = run_process(["bash", "-c", f"{stack.fill(line).replace('$BIN', str(BIN))}; echo \"status=${{PIPESTATUS[0]}}\" >&2"], stack, timeout)
        lines = seen.stderr.strip().splitlines()
        status = int(lines[-1].removeprefix("status=")) if lines and lines[-1].startswith("status=") else -1
        seen.stderr = "\n".join(lines[:-1])
        seen.message = lines[-2] if len(lines) > 1 else ""
        seen.code, seen.failed = f"exit {status}", status not in (0, 141)
        return seen
    return Case("shell", family, line.replace("$BIN", "promptbank"), act, expect)


OURS = (sdk_errors.CallError, ValueError, TypeError, PromptBankError)


def sdk(family: str, shown: str, call: Callable[[Client, Stack], Any], expect: Expect, timeout: float = 30) -> Case:
    """A `promptbank.Client` call as a script writes it: its result, or the exception it raised."""
    def act(stack: Stack) -> Seen:
        try:
            with Client(stack.address, timeout=timeout) as c:
                value = call(c, stack)
        except Exception as exc:  # what the SDK raised is the observation
            code = type(exc).__name__
            return Seen(code, True, str(exc), foreign=not isinstance(exc, OURS))
        return Seen("ok", False, stdout=repr(value)[:2000], value=value)
    return Case("sdk", family, shown, act, expect)


def rest(family: str, method: str, path: str, body: Any = None, expect: Expect | None = None,
         content_type: str = "application/json") -> Case:
    """An HTTP request to --http-port with urllib: the status, and the JSON error's message."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()

    def act(stack: Stack) -> Seen:
        req = urllib.request.Request(stack.http + path, data=data, method=method,
                                     headers={"Content-Type": content_type} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        message = parsed.get("message", "") if isinstance(parsed, dict) else ""
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):  # the OpenAI face's errors
            message = str(parsed["error"].get("message", ""))
        return Seen(f"HTTP {status}", status >= 400, message, stdout=raw.decode(errors="replace")[:4000], value=parsed)
    shown = f"{method} $H{path}" + (f" {data.decode(errors='replace')[:100]}" if data else "")
    return Case("rest", family, shown, act, expect or Expect(True))


def serve(args: str, expect: Expect, timeout: float = 40) -> Case:
    """`promptbank serve ARGS` with PROMPTBANK_DB/PORT/HTTP_PORT in the work dir and on free ports: a bad flag must
    end it with a line naming the flag; one that starts serving took the nonsense (it is stopped)."""
    env = {"PROMPTBANK_DB": "$W/serve.db", "PROMPTBANK_PORT": "0", "PROMPTBANK_HTTP_PORT": "0"}

    def act(stack: Stack) -> Seen:
        seen = run_process([str(BIN), "serve", *shlex.split(stack.fill(args))], stack, timeout,
                           env={k: stack.fill(v) for k, v in env.items()})
        if seen.timed_out and "serving on" in seen.stdout + seen.stderr:
            seen.code, seen.failed, seen.timed_out = "served", False, False
        return seen
    return Case("serve", "serve", f"promptbank serve {args}", act, expect)


def json_lines(field: str, want: Any) -> Callable[[Seen], str | None]:
    """A check of --json output: every line a JSON object whose `field` is `want`."""
    def check(seen: Seen) -> str | None:
        try:
            got = [json.loads(line)[field] for line in seen.stdout.splitlines()]
        except (ValueError, KeyError) as exc:
            return f"--json output is not JSON objects with {field!r}: {exc}"
        return None if got and all(g == want for g in got) else f"{field} came back as {got[:3]}, not {want!r}"
    return check


def stdout_is(want: str) -> Callable[[Seen], str | None]:
    def check(seen: Seen) -> str | None:
        return None if seen.stdout.strip() == want else f"stdout is {seen.stdout.strip()[:80]!r}, not {want!r}"
    return check


def all_cases() -> list[Case]:
    import careful_cases_api
    import careful_cases_cli

    return [*careful_cases_cli.cases(), *careful_cases_api.cases()]
