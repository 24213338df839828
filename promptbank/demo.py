"""`promptbank demo`: the embedded service end to end on real data and a real model.

Starts `promptbank serve` (SQLite, local Ray, packaged MiniLM) as a child process, trains two prompts of the
default kind on the tweet corpus over gRPC, classifies one mixed batch of both tasks' held-out rows in one
request, and prints accuracy beside the majority rate.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from promptbank.cli_catalog import kind_name
from promptbank.client import Client
from promptbank.data import tweet_tasks
from promptbank.progress import follow, wilson_interval
from promptbank_api.v1 import jobs_pb2 as jp

TASKS = {  # name -> (labels, label texts embedded by the encoder)
    "sentiment": (("negative", "positive"), ("negative", "positive")),
    "polarity": (("neutral", "polar"), ("neutral", "emotional")),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(a: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="promptbank-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = a.port or free_port()
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - lives as long as the child
    print(f"[demo] starting the embedded service on 127.0.0.1:{port} (SQLite {workdir / 'bank.db'}, local Ray, MiniLM)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator", "--port", str(port), "--db", str(workdir / "bank.db")],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        with Client(f"127.0.0.1:{port}", timeout=120) as c:
            c.wait_ready(timeout=300)
            return _run(a, c, t0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print(f"[demo] service stopped; its log is {workdir / 'server.log'}")


def _run(a: argparse.Namespace, c: Client, t0: float) -> int:
    data = tweet_tasks(seed=0)
    held_out: dict[str, list[tuple[str, str]]] = {}
    jobs = {}
    for name, (labels, texts) in TASKS.items():
        rows = data[name]
        train, held_out[name] = rows[: a.train_rows], rows[a.train_rows : a.train_rows + a.eval_rows]
        job = c.create_train_job(name, "minilm", train, labels=labels, label_texts=texts,
                                 hyperparameters=jp.Hyperparameters(epochs=a.epochs))
        jobs[name] = job.name
        kind = kind_name(job.hyperparameters.prompt_kind)
        print(f"[demo] submitted {job.name}: a {kind} prompt {name!r} {labels} on {len(train)} tweets")
    for name, job_name in jobs.items():
        done = follow(c, job_name)
        if done.state != jp.TrainJob.SUCCEEDED:
            print(f"[demo] {job_name} ended {jp.TrainJob.State.Name(done.state)}: {done.error}", file=sys.stderr)
            return 1
        print(f"[demo] {name}: {done.result_version} in {done.metrics.get('train_seconds', 0):.0f}s")

    mixed = [(name, text, label) for name, rows in held_out.items() for text, label in rows]
    random.Random(1).shuffle(mixed)
    t1 = time.perf_counter()
    preds = c.classify([(name, text) for name, text, _ in mixed], timeout=600)
    infer_s = time.perf_counter() - t1
    print(f"\n[demo] one Classify request with {len(mixed)} held-out rows of both tasks, mixed: {infer_s:.2f}s "
          f"({len(mixed) / infer_s:.0f} rows/s)\n")
    print(f"{'task':<10} {'held-out':>8} {'accuracy':>9} {'95% interval':>15} {'majority':>9}")
    ok = True
    for name in TASKS:
        pairs = [(p.label, gold) for p, (n, _, gold) in zip(preds, mixed, strict=True) if n == name]
        acc = sum(p == g for p, g in pairs) / len(pairs)
        majority = Counter(g for _, g in pairs).most_common(1)[0][1] / len(pairs)
        ok &= acc > majority
        lo, hi = wilson_interval(sum(p == g for p, g in pairs), len(pairs))
        print(f"{name:<10} {len(pairs):>8} {acc:>9.3f} {f'[{lo:.3f}, {hi:.3f}]':>15} {majority:>9.3f}")
    print("\n[demo] examples:")
    for p, (name, text, gold) in list(zip(preds, mixed, strict=True))[:6]:
        print(f"  {name:<9} {p.label:<8} ({p.scores[p.label]:.2f}) gold={gold:<8} {text[:70]!r}")
    print(f"\n[demo] done in {time.perf_counter() - t0:.0f}s; every task {'beats' if ok else 'does NOT beat'} its majority rate")
    return 0 if ok else 1
