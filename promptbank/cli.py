"""The `promptbank` command line: serve, train, classify, prompts, jobs, backbones, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from promptbank import cli_catalog
from promptbank.client import DEFAULT_SERVER, Client
from promptbank.output import emit
from promptbank.progress import STATE, follow
from promptbank_api.errors import PromptBankError
from promptbank_api.files import read_labelled
from promptbank_api.v1 import jobs_pb2 as jp


def cmd_serve(a: argparse.Namespace, rest: list[str]) -> int:
    """The coordinator runs as its own module so the SDK never imports server code."""
    os.execvp(sys.executable, [sys.executable, "-m", "coordinator", *rest])
    return 0  # pragma: no cover


INLINE_ROWS = 20_000  # larger local files go up as a client-streamed upload first


def cmd_train(a: argparse.Namespace, c: Client) -> int:
    if bool(a.data) == bool(a.data_uri):
        raise ValueError("train: give exactly one of --data FILE (read here) or --data-uri URI (read by the server)")
    rows: list[tuple[str, str]] = []
    uri, what = a.data_uri or "", a.data_uri
    if a.data:
        table = read_labelled(a.data, a.text_column, a.label_column)
        rows = table.rows
        if table.dropped:
            print(f"{a.data}: {table.summary()}", file=sys.stderr)
        if a.max_rows:
            rows = rows[: a.max_rows]
        what = f"{len(rows)} examples from {a.data}"
        if len(rows) > INLINE_ROWS:
            up = c.upload_dataset(rows)
            uri, rows = up.name, []
            print(f"uploaded {up.rows} examples as {up.name}", file=sys.stderr)
    init = a.init_from or a.init or ("text" if a.init_text else "")
    hp = jp.Hyperparameters(num_virtual_tokens=a.virtual_tokens, epochs=a.epochs, learning_rate=a.lr,
                            batch_size=a.batch_size, seed=a.seed, init=init, init_text=a.init_text,
                            precision=a.precision, select_on=a.select_on, input_noise=a.input_noise,
                            ema_decay=a.ema_decay, token_dropout=a.token_dropout)
    job = c.create_train_job(a.task, a.backbone, rows, dataset_uri=uri, text_column=a.text_column,
                             label_column=a.label_column, labels=a.labels or (), label_texts=a.label_texts or (),
                             label_words=a.label_words or (), pooling=a.pooling, hyperparameters=hp,
                             eval_fraction=a.eval_fraction, aliases=a.alias or ())
    if a.no_wait:
        print(job.name)
        return 0
    print(f"{job.name}: training prompt {a.task!r} on {what} (backbone {a.backbone})", file=sys.stderr)
    job = follow(c, job.name)
    if job.state != jp.TrainJob.SUCCEEDED:
        print(f"{job.name} {STATE(job.state)}: {job.error}", file=sys.stderr)
        return 1
    acc = job.metrics.get("eval_accuracy")
    print(f"{job.result_version}" + (f"  eval_accuracy={acc:.4f} (majority {job.metrics.get('majority_rate', 0):.4f})" if acc is not None else ""))
    return 0


def cmd_classify(a: argparse.Namespace, c: Client) -> int:
    if a.input:
        with open(a.input, encoding="utf-8") as f:
            rows = [(r["prompt"], r["text"]) for r in (json.loads(line) for line in f if line.strip())]
    else:
        if not a.prompt or not a.texts:
            print("classify: give --prompt REF and TEXT..., or --input FILE.jsonl", file=sys.stderr)
            return 2
        rows = [(a.prompt, t) for t in a.texts]
    for p in c.classify(rows):
        if a.json:
            print(json.dumps({"prompt": p.prompt, "text": p.text, "label": p.label, "scores": p.scores, "version": p.version}))
        else:
            print(f"{p.label}\t{p.scores[p.label]:.3f}\t{p.version}\t{p.text}")
    return 0


def cmd_generate(a: argparse.Namespace, c: Client) -> int:
    for piece in c.generate(a.prompt, " ".join(a.text), a.max_new_tokens, a.temperature, a.seed):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_jobs(a: argparse.Namespace, c: Client) -> int:
    if a.action == "list":
        for j in c.list_jobs():
            if a.json:
                emit(j, True)
            else:
                print(f"{j.name}\t{STATE(j.state)}\t{j.prompt}\tstep {j.step}/{j.total_steps}\t{j.result_version or j.error}")
        return 0
    if not a.job:
        print(f"jobs {a.action}: give a job name (jobs/<id>)", file=sys.stderr)
        return 2
    if a.action == "show":
        emit(c.get_job(a.job), a.json)
        return 0
    if a.action == "cancel":
        emit(c.cancel_job(a.job), a.json)
        return 0
    if a.action == "plot":
        from promptbank.plot import plot_job

        print(plot_job(c, a.job, Path(a.out or f"{a.job.removeprefix('jobs/')}.png")))
        return 0
    job = follow(c, a.job, quiet=a.json)
    if a.json:
        emit(job, True)
    else:
        print(f"{job.name} {STATE(job.state)} {job.result_version or job.error}")
    return 0 if job.state == jp.TrainJob.SUCCEEDED else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promptbank", description="A prompt bank: one frozen model, many soft-prompt tasks.")
    ap.add_argument("--server", default=os.environ.get("PROMPTBANK_SERVER", DEFAULT_SERVER),
                    help="coordinator address (env PROMPTBANK_SERVER)")
    ap.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds for each call")
    sub = ap.add_subparsers(dest="cmd", required=True)

    sub.add_parser("serve", help="run the coordinator (flags: see `promptbank serve --help`)", add_help=False)

    t = sub.add_parser("train", help="train a prompt on a labelled file")
    t.add_argument("--task", required=True, help="prompt (task) name; created on first use")
    t.add_argument("--backbone", default="minilm")
    t.add_argument("--data", help="local csv/tsv/json/jsonl/parquet file (sent inline, or uploaded when large)")
    t.add_argument("--data-uri", help="read by the server: a file path there, a hub dataset id[:split], or datasets/ID")
    t.add_argument("--text-column", default="text")
    t.add_argument("--label-column", default="label")
    t.add_argument("--labels", nargs="+", help="label order (default: sorted labels of the data)")
    t.add_argument("--label-texts", nargs="+", help="texts embedded for each label (encoder backbones)")
    t.add_argument("--label-words", nargs="+", help="words scored for each label (LM backbones)")
    t.add_argument("--pooling", default="", choices=["all", "prompt", "text"],
                   help="encoder backbones, new prompts: 'all' (default) reads the text and each label text "
                        "through the prompt and pools every position; 'prompt' pools only the prompt's "
                        "positions; 'text' pools the text's tokens and compares them with the plain label texts")
    t.add_argument("--virtual-tokens", type=int, default=0, help="prompt length (default 20)")
    t.add_argument("--epochs", type=int, default=0, help="default 12")
    t.add_argument("--lr", type=float, default=0.0, help="learning rate (default 0.03)")
    t.add_argument("--batch-size", type=int, default=0, help="default 8")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", default="", help="random | vocab | labels | text | a prompt reference | nearest")
    t.add_argument("--init-text", default="", help="text whose token embeddings start the prompt (init=text)")
    t.add_argument("--init-from", default="", help="start from a stored version (REF), or 'nearest' (transfer)")
    t.add_argument("--precision", default="", choices=["auto", "bf16", "fp32"],
                   help="training autocast (default auto: bf16 where the hardware has it)")
    t.add_argument("--eval-fraction", type=float, default=0.0,
                   help="fraction of the rows held out for evaluation and early stopping (default 0.05)")
    t.add_argument("--select-on", default="", choices=["eval_loss", "eval_accuracy"],
                   help="eval metric that stops early and keeps the latest prompt within one standard error of "
                        "the best (default eval_loss)")
    t.add_argument("--input-noise", type=float, default=None,
                   help="noise on the text's token embeddings while training, NEFTune alpha (default 5; 0 = off)")
    t.add_argument("--ema-decay", type=float, default=None,
                   help="keep an exponential moving average of the prompt, decay per step (default 0.998; 0 = off)")
    t.add_argument("--token-dropout", type=float, default=None,
                   help="drop each text token with this probability while training (default 0 = off)")
    t.add_argument("--alias", action="append", help="also point this alias at the result (repeatable)")
    t.add_argument("--max-rows", type=int, default=0, help="use only the first N rows of the file")
    t.add_argument("--no-wait", action="store_true", help="print the job name and return")

    c = sub.add_parser("classify", help="classify texts with one prompt, or mixed rows from a jsonl file")
    c.add_argument("--prompt", help="prompt reference: task, task@alias, task/versions/N")
    c.add_argument("--input", help='jsonl with {"prompt": REF, "text": ...} per line (may mix tasks)')
    c.add_argument("--json", action="store_true")
    c.add_argument("texts", nargs="*")

    g = sub.add_parser("generate", help="generate text with a soft prompt, streamed (causal-LM/seq2seq backbones)")
    g.add_argument("--prompt", required=True, help="prompt reference")
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("text", nargs="+")

    j = sub.add_parser("jobs", help="list, show, watch or cancel train jobs")
    j.add_argument("action", choices=["list", "show", "watch", "cancel", "plot"])
    j.add_argument("job", nargs="?")
    j.add_argument("--out", default="", help="plot: the PNG to write (default JOB_ID.png)")
    j.add_argument("--json", action="store_true")

    cli_catalog.add_parsers(sub)

    d = sub.add_parser("demo", help="THE MAIN JOB: embedded service, two real tasks, one mixed batch")
    d.add_argument("--train-rows", type=int, default=2000, help="training rows per task")
    d.add_argument("--eval-rows", type=int, default=500, help="held-out rows per task")
    d.add_argument("--epochs", type=int, default=3)
    d.add_argument("--port", type=int, default=0, help="0 = a free port")
    d.add_argument("--workdir", default="", help="where the demo's SQLite bank goes (default: a temp dir)")
    return ap


COMMANDS = {"train": cmd_train, "classify": cmd_classify, "generate": cmd_generate, "jobs": cmd_jobs,
            "prompts": cli_catalog.cmd_prompts, "backbones": cli_catalog.cmd_backbones}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    a, rest = ap.parse_known_args(argv)
    if a.cmd == "serve":
        return cmd_serve(a, rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if a.cmd == "demo":
        from promptbank.demo import run_demo

        return run_demo(a)
    try:
        with Client(a.server, timeout=a.timeout) as client:
            return COMMANDS[a.cmd](a, client)
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    except (ValueError, FileNotFoundError, PromptBankError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
