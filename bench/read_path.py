"""The read path while training writes: Classify latency with a training job streaming events and checkpoints
vs with no job, against a coordinator process.

    python bench/read_path.py [--requests 600] [--concurrency 16] [--rows 2] [--json PATH] [--quick]

Starts `python -m coordinator` (SQLite in a temp dir, local Ray) serving the packaged all-MiniLM-L6-v2 for
Classify and a tiny random encoder (built here from a config) for training. The same Classify load runs twice:
alone, then while a job on the tiny encoder writes a checkpoint every step (the heaviest write stream a job
makes: one SQL transaction with the optimizer state per step, besides its progress events). Reads run on
their own threads and resolutions are cached, so they should not wait for those writes. Goal: p99 with the
job / p99 alone <= 1.2. The job's compute shares this machine's cores with the Classify forwards, which
the ratio also pays for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _record import Record, add_flags
from _timing import percentile
from soak import Load
from transformers import AutoTokenizer, BertConfig, BertModel

from bank.codec import encode_prompt
from bank.peft_format import export_peft
from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank.data import tweet_tasks
from promptbank_api.v1 import jobs_pb2 as jp

TASK = {"labels": ["negative", "positive"]}


def tiny_encoder(path: Path) -> str:
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=256)).save_pretrained(path)
    AutoTokenizer.from_pretrained(packaged_minilm()).save_pretrained(path)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rows", type=int, default=2)
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.requests, a.concurrency = 40, 4
    rec = Record("read_path", vars(a), a.quick)
    tmp = Path(tempfile.mkdtemp(prefix="pb-read-"))
    tiny = tiny_encoder(tmp / "tiny")
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:512]]
    requests = [[(f"task{(i + j) % 4}", texts[(i * a.rows + j) % len(texts)]) for j in range(a.rows)]
                for i in range(a.requests)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"
    log = open(tmp / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "coordinator", "--port", str(port), "--db", str(tmp / "bank.db"),
                               "--backbone", f"minilm={packaged_minilm()}", "--backbone", f"tiny={tiny}"],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RAY_ADDRESS": ""})
    try:
        with Client(address, timeout=120) as c:
            c.wait_ready(timeout=300)
            g = torch.Generator().manual_seed(0)
            for i in range(4):
                blob = encode_prompt(torch.randn(20, 384, generator=g) * 0.5)
                cfg, weights = export_peft(blob, base_model=packaged_minilm(), revision="", architecture="encoder",
                                           num_virtual_tokens=20, token_dim=384, task=TASK, extra=None)
                c.import_version(f"task{i}", "minilm", cfg, weights, labels=TASK["labels"])
            asyncio.run(Load(address, requests[: a.concurrency * 2], a.concurrency).run())  # warm-up
            alone = Load(address, requests, a.concurrency)
            asyncio.run(alone.run())
            rows = [(t, "positive" if i % 2 else "negative") for i, t in enumerate(texts[:256])]
            hp = jp.Hyperparameters(num_virtual_tokens=4, epochs=10_000, max_steps=1_000_000, batch_size=8,
                                    checkpoint_every=1, patience=1_000_000)
            job = c.create_train_job("writer", "tiny", rows, hyperparameters=hp, eval_fraction=0)
            for ev in c.watch_job(job.name, timeout=300):
                if ev.kind == jp.TrainJobEvent.PROGRESS:
                    break
            step0 = c.get_job(job.name).step
            t0 = time.perf_counter()
            busy = Load(address, requests, a.concurrency)
            asyncio.run(busy.run())
            steps = c.get_job(job.name).step - step0
            writes_per_s = steps / (time.perf_counter() - t0)
            c.cancel_job(job.name)
    finally:
        server.terminate()
        server.wait(timeout=120)
        log.close()

    p99_alone, p99_busy = percentile(alone.latencies, 0.99), percentile(busy.latencies, 0.99)
    errors = sum(alone.errors.values()) + sum(busy.errors.values())
    print(f"read path: {a.requests} Classify requests x {a.rows} rows, concurrency {a.concurrency}, {os.cpu_count()} CPUs")
    print(f"  alone:       p50 {statistics.median(alone.latencies) * 1e3:7.1f} ms  p99 {p99_alone * 1e3:7.1f} ms")
    print(f"  while a job writes a checkpoint every step ({writes_per_s:.1f} steps/s): "
          f"p50 {statistics.median(busy.latencies) * 1e3:7.1f} ms  p99 {p99_busy * 1e3:7.1f} ms")
    print(f"  p99 with the job / alone: {p99_busy / p99_alone:.3f}  (goal <= 1.2); errors {errors}")
    rec.figure("Classify p99, no job", p99_alone * 1e3, "ms", decimals=1)
    rec.figure("Classify p99, a job checkpointing every step", p99_busy * 1e3, "ms", decimals=1)
    rec.figure("job steps (checkpoints) per second meanwhile", writes_per_s, "1/s", decimals=1)
    rec.figure("p99 with the job / no job", p99_busy / p99_alone, decimals=3, goal="<= 1.2")
    rec.figure("errors", errors, decimals=0, goal="<= 0")
    rec.note("the job trains a tiny random encoder on its own replica; its compute shares the machine's cores "
             "with the Classify forwards on all-MiniLM-L6-v2")
    rec.write(a.json)


if __name__ == "__main__":
    main()
