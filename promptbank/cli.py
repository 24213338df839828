"""The `promptbank` command line: serve, train, classify, generate, jobs, prompts, backbones, tokens, audit,
outcomes, demo, completion.

Every error a user can cause ends in one line on stderr naming the problem (never a traceback): exit 1 for an
error the server returned, 2 for bad input here, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from promptbank import cli_args, cli_audit, cli_catalog, cli_live, cli_tokens
from promptbank.client import DEFAULT_SERVER, RECONNECT_FOR_S, Client
from promptbank.errors import Unauthenticated, Unavailable, typed
from promptbank.output import emit, plural, table
from promptbank.progress import STATE, follow, small_eval_warning, truncation_note
from promptbank_api.errors import PromptBankError
from promptbank_api.files import json_lines, read_labelled
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp
from promptbank_domain.train_config import PARAMS, TYPES, default_text, on_wire

INLINE_ROWS = 20_000  # larger local files go up as a client-streamed upload first...
INLINE_BYTES = 16 << 20  # ... and so do files whose texts are this large (one job message stays far below 96 MiB)
# TrainConfig's table drives the train flags: each flag's dest -> its field (unset flags leave it unset: the
# server's default). Optional scalars go as given (0 included); strings as given ("" = the default).
HYPERPARAMETERS = {PARAMS[name].dest: name for name in on_wire("optional")}
TEXTS = {PARAMS[name].dest: name for name in on_wire("text")}
KINDS = {"": cat.PROMPT_KIND_UNSPECIFIED, **cli_catalog.PROMPT_KINDS}  # --kind's names -> the API's enum


class Interrupted(Exception):
    """Ctrl-C while following something that goes on without us; `message` says how to pick it up again."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def os_message(err: OSError) -> str:
    """`path: what went wrong`, lower-case as the other messages are (`[Errno 2] No such file or directory:
    'x'` -> `x: no such file or directory`)."""
    if err.strerror and err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else str(err.filename)
        return f"{where}: {err.strerror[0].lower()}{err.strerror[1:]}"
    return err.strerror or str(err)


def read_token(path: str | None) -> str | None:
    """The token from --token-file (None: the client falls back to env PROMPTBANK_TOKEN)."""
    if not path:
        return None
    try:
        secret = Path(path).read_text().strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"--token-file {path} is not text (byte {exc.start + 1} is {exc.object[exc.start]:#04x}); "
                         f"it should hold the token alone") from None
    if not secret:
        raise ValueError(f"--token-file {path} is empty")
    return secret


def cmd_serve(a: argparse.Namespace, rest: list[str]) -> int:
    """The coordinator runs as its own module so the SDK never imports server code."""
    os.execvp(sys.executable, [sys.executable, "-m", "coordinator", *rest])
    return 0  # pragma: no cover


def hyperparameters(a: argparse.Namespace) -> jp.Hyperparameters:
    """Only the flags the user gave: 0 is sent as 0 (and refused where it means nothing), never as "unset"."""
    given = {field: getattr(a, dest) for dest, field in HYPERPARAMETERS.items() if getattr(a, dest) is not None}
    texts = {field: getattr(a, dest) for dest, field in TEXTS.items()}
    texts["init"] = a.init_from or a.init or ("text" if a.init_text else "")
    return jp.Hyperparameters(prompt_kind=KINDS[a.kind], **texts, **given)


def job_is_running(job: str) -> Interrupted:
    return Interrupted(f"{job} keeps running; follow it with `promptbank jobs watch {job}` or cancel it with "
                       f"`promptbank jobs cancel {job}`")


def cmd_train(a: argparse.Namespace, c: Client) -> int:
    if bool(a.data) == bool(a.data_uri):
        raise ValueError("train: give exactly one of --data FILE (read here) or --data-uri URI (read by the server)")
    rows: list[tuple[str, str]] = []
    uri, what = a.data_uri or "", a.data_uri
    if a.data:
        read = read_labelled(a.data, a.text_column, a.label_column, a.encoding)
        rows = read.rows
        if read.dropped:
            print(f"{a.data}: {read.summary()}", file=sys.stderr)
        if a.max_rows is not None:
            rows = rows[: a.max_rows]
        what = f"{plural(len(rows), 'example')} from {a.data}"
        if len(rows) > INLINE_ROWS or sum(len(t.encode()) + len(lab.encode()) for t, lab in rows) > INLINE_BYTES:
            up = c.upload_dataset(rows)
            uri, rows = up.name, []
            print(f"uploaded {plural(up.rows, 'example')} as {up.name}", file=sys.stderr)
    job = c.create_train_job(a.task, a.backbone, rows, dataset_uri=uri, text_column=a.text_column,
                             label_column=a.label_column, labels=a.labels or (), label_texts=a.label_texts or (),
                             label_words=a.label_words or (), pooling=a.pooling, hyperparameters=hyperparameters(a),
                             eval_fraction=a.eval_fraction, aliases=a.alias or (), request_id=a.request_id or None)
    if a.no_wait:
        emit({"name": job.name}, True) if a.json else print(job.name)
        return 0
    print(f"{job.name}: training prompt {a.task!r} on {what} (backbone {a.backbone})", file=sys.stderr)
    try:
        job = follow(c, job.name, reconnect_for=a.reconnect_for)
    except KeyboardInterrupt:
        raise job_is_running(job.name) from None
    if job.state != jp.TrainJob.SUCCEEDED:
        if a.json:
            emit(job, True)
        print(f"{job.name} {STATE(job.state)}: {job.error}", file=sys.stderr)
        return 1
    for warning in (small_eval_warning(job), truncation_note(job)):
        if warning:
            print(warning, file=sys.stderr)
    if a.json:
        emit(job, True)
        return 0
    acc = job.metrics.get("eval_accuracy")
    majority = job.metrics.get("majority_rate", 0.0)
    if acc is not None:  # stderr: a script capturing stdout gets the version's name and nothing else
        print(f"eval_accuracy={acc:.4f} (majority {majority:.4f})", file=sys.stderr)
    print(job.result_version)
    return 0


def classify_rows(path: Path, default_prompt: str | None, default_key: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Rows of a JSON-lines file: {"text": ..., "prompt": REF, "routing_key": KEY}; `--prompt` fills rows that name
    no prompt, `--routing-key` rows that name no key. Returns the rows and their routing keys."""
    rows, keys = [], []
    for n, rec in json_lines(path):
        text, prompt = rec.get("text"), rec.get("prompt", default_prompt)
        key = rec.get("routing_key", default_key)
        if not isinstance(text, str):
            raise ValueError(f"{path}:{n}: 'text' must be a string, got {json.dumps(text)}")
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"{path}:{n}: the row names no 'prompt' (give one, or --prompt REF for all rows)")
        if not isinstance(key, str):
            raise ValueError(f"{path}:{n}: 'routing_key' must be a string, got {json.dumps(key)}")
        rows.append((prompt, text))
        keys.append(key)
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return rows, keys


def cmd_classify(a: argparse.Namespace, c: Client) -> int:
    if a.input:
        if a.texts:
            raise ValueError(f"classify: give TEXT... or --input FILE, not both (TEXT {a.texts[0]!r} with --input "
                             f"{a.input})")
        rows, keys = classify_rows(Path(a.input), a.prompt, a.routing_key)
    else:
        if not a.prompt or not a.texts:
            raise ValueError("classify: give --prompt REF and TEXT..., or --input FILE.jsonl")
        rows, keys = [(a.prompt, t) for t in a.texts], [a.routing_key] * len(a.texts)
    preds = c.classify(rows, routing_key=keys)
    if a.json:
        for p in preds:
            print(json.dumps({"prompt": p.prompt, "text": p.text, "label": p.label, "scores": p.scores,
                              "version": p.version, "id": p.id, "canary": p.canary}))
        return 0
    table(preds, [("LABEL", lambda p: p.label), ("SCORE", lambda p: f"{p.scores[p.label]:.3f}"),
                  ("VERSION", lambda p: p.version + (" (canary)" if p.canary else "")), ("ID", lambda p: p.id or "-"),
                  ("TEXT", lambda p: p.text)], False, "rows")
    return 0


def cmd_generate(a: argparse.Namespace, c: Client) -> int:
    if len(a.text) > 1:  # joining them would guess at the spacing the user meant
        raise ValueError(f"generate takes one TEXT, got {len(a.text)} ({' '.join(map(repr, a.text[:3]))}"
                         f"{' ...' if len(a.text) > 3 else ''}); quote the whole text as one argument")
    try:
        gen = c.generate(a.prompt, a.text[0], a.max_new_tokens, a.temperature, a.seed, top_p=a.top_p,
                         top_k=a.top_k, stop=a.stop, backbone=a.backbone)
        for piece in gen:
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        print()
        raise Interrupted("generation stopped") from None
    print()
    if a.usage:
        print(f"finish_reason={gen.finish_reason} prompt_tokens={gen.prompt_tokens} "
              f"generated_tokens={gen.generated_tokens}", file=sys.stderr)
    return 0


def cmd_jobs(a: argparse.Namespace, c: Client) -> int:
    if a.action == "list":
        table(c.list_jobs(), [("NAME", lambda j: j.name), ("STATE", lambda j: STATE(j.state)),
                              ("PROMPT", lambda j: j.prompt), ("STEP", lambda j: f"{j.step}/{j.total_steps}"),
                              ("RESULT", lambda j: j.result_version or j.error or "-")], a.json, "jobs")
        return 0
    if a.action == "show":
        emit(c.get_job(a.job), a.json)
    elif a.action == "cancel":
        job = c.cancel_job(a.job)
        emit(job, True) if a.json else print(f"{job.name}: cancel requested ({STATE(job.state)})")
    elif a.action == "plot":
        from promptbank.plot import plot_job

        print(plot_job(c, a.job, Path(a.out or f"{a.job.removeprefix('jobs/')}.png")))
    else:
        try:
            job = follow(c, a.job, quiet=a.json, reconnect_for=a.reconnect_for)
        except KeyboardInterrupt:
            raise job_is_running(a.job if a.job.startswith("jobs/") else f"jobs/{a.job}") from None
        emit(job, True) if a.json else print(f"{job.name} {STATE(job.state)} {job.result_version or job.error}")
        return 0 if job.state == jp.TrainJob.SUCCEEDED else 1
    return 0


def cmd_completion(a: argparse.Namespace) -> int:
    """A shell completion script generated from this parser (`source <(promptbank completion bash)`)."""
    import shtab

    print(shtab.complete(build_parser(), shell=a.shell))
    return 0


def _hyperparameter_flags(t: argparse.ArgumentParser) -> None:
    """One flag per row of TrainConfig's table that has one, its help from the row: range and real defaults
    (each kind's, as promptbank_domain.kinds describes them)."""
    for name, p in PARAMS.items():
        if not p.flag:
            continue
        integer = TYPES[name] == "int"
        said = [p.rule(integer, note=False) if not p.choices else "", p.note, f"default {default_text(name)}"]
        text = f"{p.help} ({'; '.join(x for x in said if x)})"
        if p.wire in ("optional", "dataset"):
            t.add_argument(p.flag, type=cli_args.int64 if integer else float, help=text, metavar=p.metavar or None)
        else:
            t.add_argument(p.flag, default="", choices=list(p.options) or None, help=text, metavar=p.metavar or None)


def _reconnect_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reconnect-for", type=cli_args.seconds, default=RECONNECT_FOR_S, metavar="SECONDS",
                   help=f"while following a job, how long to keep retrying a coordinator that does not answer "
                        f"(default {RECONNECT_FOR_S:g}); the job itself goes on either way")


def _train_flags(t: argparse.ArgumentParser) -> None:
    t.add_argument("--task", required=True, help="prompt (task) name; created on first use")
    t.add_argument("--backbone", default="minilm", help="the backbone to train on (default minilm; see "
                                                            "`promptbank backbones list`)")
    t.add_argument("--data", help="local csv/tsv/json/jsonl/parquet file (sent inline, or uploaded when large)")
    t.add_argument("--data-uri", help="read by the server: a file under its --data-root, a hub dataset "
                                      "id[:split], or datasets/ID")
    t.add_argument("--text-column", default="text", help="the data's text column (default text)")
    t.add_argument("--label-column", default="label", help="the data's label column (default label)")
    t.add_argument("--encoding", default="", metavar="CODEC",
                   help="a csv/tsv --data file's encoding when it is not UTF-8 (e.g. latin-1); without it, a byte "
                        "that is not UTF-8 is refused rather than read as another character")
    t.add_argument("--labels", nargs="+", help="label order (default: sorted labels of the data)")
    t.add_argument("--label-texts", nargs="+", help="texts embedded for each label (encoder backbones)")
    t.add_argument("--label-words", nargs="+", help="words scored for each label (LM backbones)")
    t.add_argument("--pooling", default="", choices=["all", "prompt", "text"],
                   help="encoder backbones, new prompts: 'all' (default) reads the text and each label text "
                        "through the prompt and pools every position; 'prompt' pools only the prompt's "
                        "positions; 'text' pools the text's tokens and compares them with the plain label texts")
    _hyperparameter_flags(t)
    t.add_argument("--init-from", default="", help="start from a stored version (REF), or 'nearest' (transfer)")
    t.add_argument("--alias", action="append", help="also point this alias at the result (repeatable)")
    t.add_argument("--max-rows", type=cli_args.at_least_one, metavar="N", help="use only the first N (>= 1) rows of the file")
    t.add_argument("--request-id", default="", help="makes a retried submit safe: the same id returns the first job")
    t.add_argument("--no-wait", action="store_true", help="print the job name and return")
    _reconnect_flag(t)
    t.add_argument("--json", action="store_true", help="print the finished job (or, with --no-wait, its name) as JSON")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promptbank", description="A prompt bank: one frozen model, many soft-prompt tasks.")
    ap.add_argument("--server", type=cli_args.address, default=os.environ.get("PROMPTBANK_SERVER") or DEFAULT_SERVER,
                    help=f"coordinator address host:port (env PROMPTBANK_SERVER; default {DEFAULT_SERVER})")
    ap.add_argument("--timeout", type=cli_args.seconds, default=120.0, metavar="SECONDS",
                    help="deadline in seconds for each call (default 120)")
    ap.add_argument("--token-file", metavar="FILE",
                    help="a file holding the access token to send (env PROMPTBANK_TOKEN)")
    ap.add_argument("--tls-ca", metavar="FILE", help="connect with TLS; the server's CA (PEM; env PROMPTBANK_TLS_CA)")
    ap.add_argument("--tls-cert", metavar="FILE", help="client certificate for mutual TLS (PEM)")
    ap.add_argument("--tls-key", metavar="FILE", help="key of --tls-cert (PEM)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the coordinator (flags: see `promptbank serve --help`)", add_help=False)
    _train_flags(sub.add_parser("train", help="train a prompt on a labelled file"))

    c = sub.add_parser("classify", help="classify texts with one prompt, or mixed rows from a jsonl file")
    c.add_argument("--prompt", type=cli_args.nonempty, help="prompt reference: task, task@alias, task/versions/N (with --input: the "
                                    "prompt of rows that name none)")
    c.add_argument("--input", help='jsonl with {"prompt": REF, "text": ...} per line (may mix tasks)')
    c.add_argument("--routing-key", default="", metavar="KEY",
                   help="keeps a caller on one side of an alias's canary (with --input: for rows that name no "
                        "routing_key)")
    c.add_argument("--json", action="store_true", help="one JSON object a row instead of a table")
    c.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify with --prompt")

    g = sub.add_parser("generate", help="generate text with a soft prompt, streamed (causal-LM/seq2seq backbones)")
    under = g.add_mutually_exclusive_group(required=True)
    under.add_argument("--prompt", type=cli_args.nonempty, help="prompt reference: task, task@alias, task/versions/N")
    under.add_argument("--backbone", help="generate with the backbone alone, no prompt (trainer role)")
    g.add_argument("--max-new-tokens", type=cli_args.int32, help="1..512 (default 32)")
    g.add_argument("--temperature", type=float, default=0.0, help="0..100; 0 = greedy (default)")
    g.add_argument("--top-p", type=float, help="nucleus sampling, in (0, 1] (default 1: off)")
    g.add_argument("--top-k", type=cli_args.int32, help="sample among the k likeliest tokens, 0..1000 (default 0: off)")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end the output before this text (repeatable, at most 4)")
    g.add_argument("--seed", type=cli_args.int64, default=0, help="the request's own sampling seed (default 0)")
    g.add_argument("--usage", action="store_true", help="then print the finish reason and token counts to stderr")
    g.add_argument("text", nargs="+", metavar="TEXT", help="the text to continue (one argument: quote it)")

    j = sub.add_parser("jobs", help="list, show, watch, cancel or plot train jobs")
    js = j.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = js.add_parser("list", help="jobs, newest first")
    p.add_argument("--json", action="store_true")
    for action, text in (("show", "one job"), ("watch", "follow a job until it ends (exit 0 only on SUCCEEDED)"),
                         ("cancel", "stop a job at its next step (its last checkpoint is kept)")):
        p = js.add_parser(action, help=text)
        p.add_argument("job", type=cli_args.nonempty, help="jobs/ID or ID")
        p.add_argument("--json", action="store_true")
        if action == "watch":
            _reconnect_flag(p)
    p = js.add_parser("plot", help="draw a job's loss and eval accuracy to a PNG")
    p.add_argument("job", type=cli_args.nonempty, help="jobs/ID or ID")
    p.add_argument("--out", default="", help="the PNG to write (default ID.png)")

    cli_catalog.add_parsers(sub)
    cli_tokens.add_parsers(sub)
    cli_audit.add_parsers(sub)
    cli_live.add_parsers(sub)

    d = sub.add_parser("demo", help="THE MAIN JOB: embedded service, two real tasks, one mixed batch")
    d.add_argument("--train-rows", type=cli_args.at_least_one, default=2000, help="training rows per task (>= 1)")
    d.add_argument("--eval-rows", type=cli_args.at_least_one, default=500, help="held-out rows per task (>= 1)")
    d.add_argument("--epochs", type=cli_args.at_least_one, default=3, help="passes over the training rows (>= 1)")
    d.add_argument("--port", type=cli_args.port, default=0, help="0 = a free port")
    d.add_argument("--workdir", default="", help="where the demo's SQLite bank goes (default: a temp dir)")

    s = sub.add_parser("completion", help="print a shell completion script: source <(promptbank completion bash)")
    s.add_argument("shell", choices=["bash", "zsh"])
    return ap


GLOBAL_FLAGS = ("--server", "--timeout", "--token-file", "--tls-ca", "--tls-cert", "--tls-key")
# What to check when a call fails this way (exit 1 either way); the server's message says the rest.
HINTS = {Unauthenticated: "pass --token-file or set PROMPTBANK_TOKEN",
         Unavailable: "retry later; if it persists, check --server and --tls-ca"}

COMMANDS = {"train": cmd_train, "classify": cmd_classify, "generate": cmd_generate, "jobs": cmd_jobs,
            "prompts": cli_catalog.cmd_prompts, "backbones": cli_catalog.cmd_backbones, "tokens": cli_tokens.cmd_tokens,
            "audit": cli_audit.cmd_audit, "outcomes": cli_live.cmd_outcomes}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if sys.stdout is None:  # started with stdout closed (`>&-`): what it would print would be lost
        print("error: stdout is closed; nothing could be printed (redirect it to a file or /dev/null)",
              file=sys.stderr)
        return 2
    ap = build_parser()
    a, rest = ap.parse_known_args(argv)
    if a.cmd == "serve":
        return cmd_serve(a, rest)
    if rest:
        placed = next((r.split("=")[0] for r in rest if r.split("=")[0] in GLOBAL_FLAGS), None)
        if placed:  # `promptbank train ... --server X`: argparse would only say "unrecognized arguments"
            ap.error(f"{placed} is a global flag: put it before the command (promptbank {placed} VALUE {a.cmd} ...)")
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if a.cmd == "completion":
            return cmd_completion(a)
        if a.cmd == "demo":
            from promptbank.demo import run_demo

            return run_demo(a)
        with Client(a.server, timeout=a.timeout, token=read_token(a.token_file), tls_ca=a.tls_ca,
                    tls_cert=a.tls_cert, tls_key=a.tls_key) as client:
            return COMMANDS[a.cmd](a, client)
    except grpc.RpcError as err:  # the client raises promptbank.errors' classes; typed() types any other
        failed = typed(err)
        hint = HINTS.get(type(failed))
        print(f"error: {failed}" + (f" ({hint})" if hint else ""), file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"\ninterrupted: {stop.message}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`... | head -1`): stop quietly, as a shell tool does on SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141
    except OSError as err:  # a file or path named here: one line in the CLI's words, not `[Errno N] ...`
        print(f"error: {os_message(err)}", file=sys.stderr)
        return 2
    except (ValueError, PromptBankError) as err:  # bad input here: a file's content, a flag value
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
