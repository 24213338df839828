"""End to end: rows/s through gRPC -> coordinator -> Ray actor vs the worker called in-process.

    python bench/e2e.py [--concurrency 32] [--requests 512] [--rows 4] [--tasks 8] [--json PATH] [--quick]

Starts `python -m coordinator` as its own process (SQLite in a temp dir, local Ray, the packaged MiniLM),
imports `--tasks` prompts over gRPC, then keeps `--concurrency` Classify calls of `--rows` rows (tasks
mixed) in flight from an asyncio client until `--requests` are done, and reports rows/s with p50/p99
latency. The baseline runs the same rows through an in-process BackboneWorker in batches of the
micro-batcher's maximum size, measured first while nothing else runs. Goal: served / in-process >= 0.90.
Client, coordinator and actor share this machine's cores, which the ratio pays for.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _record import Record, add_flags
from _serve import TASK, Load, coordinator_process, import_prompts, mixed_requests, random_prompts
from _timing import percentile

from bank.codec import sha256_hex
from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank.data import tweet_tasks
from promptbank_domain.task import TaskSpec
from workers.actor import BackboneWorker
from workers.protocol import ClassifyBatch

BATCH_ROWS = 64  # the micro-batcher's default max rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=8)
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.concurrency, a.requests, a.rows, a.tasks = 2, 8, 2, 2
    rec = Record("e2e", vars(a), a.quick)
    warnings.filterwarnings("ignore")
    model = packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:256]]
    blobs = random_prompts(a.tasks)
    requests = mixed_requests(texts, a.requests, a.rows, a.tasks)

    # Baseline first, on a quiet machine: the same rows through an in-process worker in batches of the
    # micro-batcher's maximum (64 rows), the best case the server's batches can reach.
    w = BackboneWorker(model)
    keys = {f"task{i}": sha256_hex(b) for i, b in enumerate(blobs)}
    prompts = {sha256_hex(b): b for b in blobs}
    tasks = dict.fromkeys(prompts, TaskSpec.from_dict(TASK))
    rows = [(keys[ref], text) for req in requests for ref, text in req]
    w.classify(ClassifyBatch(rows[:BATCH_ROWS], prompts, tasks))
    t0 = time.perf_counter()
    for i in range(0, len(rows), BATCH_ROWS):
        w.classify(ClassifyBatch(rows[i : i + BATCH_ROWS], prompts, tasks))  # cached after the first call
    local_s = time.perf_counter() - t0
    del w

    tmp = Path(tempfile.mkdtemp(prefix="pb-e2e-"))
    with coordinator_process(tmp, stop_timeout=60) as (address, _), Client(address, timeout=120) as c:
        import_prompts(c, model, blobs)
        Load(address, requests[: a.concurrency * 2], a.concurrency).timed()  # warm-up
        load = Load(address, requests, a.concurrency)
        served_s, lat = load.timed(), load.latencies
    if load.errors:
        raise SystemExit(f"served requests failed: {load.errors}")
    stats = re.findall(r"batcher minilm: (\d+) batches, (\d+) rows", (tmp / "server.log").read_text())
    batches, rows_done = (int(x) for x in stats[-1]) if stats else (0, 0)

    n_rows = a.requests * a.rows
    print(f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}; all-MiniLM-L6-v2; {a.requests} requests x {a.rows} rows over {a.tasks} tasks, "
          f"concurrency {a.concurrency}")
    print(f"served (gRPC -> coordinator -> Ray actor): {n_rows / served_s:7.1f} rows/s  {a.requests / served_s:6.1f} req/s"
          f"  p50 {statistics.median(lat) * 1e3:6.1f} ms  p99 {percentile(lat, 0.99) * 1e3:6.1f} ms  "
          f"(server formed {rows_done / max(1, batches):.1f} rows/batch, warm-up included)")
    print(f"in-process worker, same rows, {BATCH_ROWS}-row batches: {n_rows / local_s:7.1f} rows/s")
    print(f"  served / in-process throughput: {local_s / served_s:.3f}  (goal >= 0.90)")
    rec.figure("served throughput (gRPC -> coordinator -> Ray actor)", n_rows / served_s, "rows/s", decimals=1)
    rec.figure("served requests", a.requests / served_s, "req/s", decimals=1)
    rec.figure("served latency p50", statistics.median(lat) * 1e3, "ms", decimals=1)
    rec.figure("served latency p99", percentile(lat, 0.99) * 1e3, "ms", decimals=1)
    rec.figure("rows per server batch (warm-up included)", rows_done / max(1, batches), "rows", decimals=1)
    rec.figure(f"in-process worker throughput ({BATCH_ROWS}-row batches)", n_rows / local_s, "rows/s", decimals=1)
    rec.figure("served / in-process throughput", local_s / served_s, decimals=3, goal=">= 0.90")
    rec.note(f"{a.requests} requests x {a.rows} rows over {a.tasks} tasks, {a.concurrency} in flight; client, "
             "coordinator and actor share the machine's cores; the in-process baseline ran first, alone")
    rec.write(a.json)


if __name__ == "__main__":
    main()
