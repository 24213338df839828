"""End to end: requests/s through gRPC -> coordinator -> Ray actor vs the worker called in-process.

    python bench/e2e.py [--concurrency 32] [--requests 512] [--rows 4] [--tasks 8]

Starts a real coordinator (SQLite in a temp dir, local Ray, the packaged MiniLM), stores `--tasks` prompts,
then fires `--requests` Classify calls of `--rows` rows (tasks mixed) from `--concurrency` client threads
and reports rows/s with p50/p99 latency. The baseline runs the same rows through an in-process
BackboneWorker in batches of the size the server's micro-batcher formed (goal: served/in-process >= 0.90).
Client, coordinator and actor share this machine's cores, which the ratio pays for.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ray
import torch
from _timing import percentile

from bank import store
from bank.codec import encode_prompt, sha256_hex
from coordinator.config import BackboneSpec, ServerConfig, packaged_minilm
from coordinator.server import start
from promptbank import Client
from promptbank.data import tweet_tasks
from workers.actor import BackboneWorker

TASK = {"kind": "classification", "labels": ["negative", "positive"], "label_words": ["negative", "positive"],
        "label_texts": ["negative", "positive"], "description": ""}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=8)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    model = packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:256]]
    g = torch.Generator().manual_seed(0)
    blobs = [encode_prompt(torch.randn(20, 384, generator=g) * 0.5) for _ in range(a.tasks)]

    ray.init(include_dashboard=False, log_to_driver=False)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="pb-bench-"))
    cfg = ServerConfig(port=0, db=str(tmp / "bank.db"), backbones=(BackboneSpec("minilm", model),))
    coord = asyncio.run_coroutine_threadsafe(start(cfg), loop).result()

    def seed(s):  # type: ignore[no-untyped-def]
        bb = store.get_backbone(s, "minilm")
        for i, b in enumerate(blobs):
            store.add_version(s, store.create_prompt(s, f"task{i}", TASK), bb, b)

    coord.db.run_sync(seed)
    requests = [[(f"task{(i + j) % a.tasks}", texts[(i * a.rows + j) % len(texts)]) for j in range(a.rows)]
                for i in range(a.requests)]

    def call(req):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        with_client = clients[threading.get_ident() % len(clients)]
        with_client.classify(req)
        return time.perf_counter() - t

    clients = [Client(f"127.0.0.1:{coord.port}", timeout=120) for _ in range(4)]
    with ThreadPoolExecutor(a.concurrency) as ex:
        list(ex.map(call, requests[: a.concurrency * 2]))  # warm-up: prompts reach the replica cache
        batcher = coord.inference.batchers["minilm"]
        b0, r0 = batcher.batches, batcher.rows
        t0 = time.perf_counter()
        lat = list(ex.map(call, requests))
        served_s = time.perf_counter() - t0
    batches, batch_rows = batcher.batches - b0, batcher.rows - r0
    avg_batch = max(1, round(batch_rows / max(1, batches)))
    asyncio.run_coroutine_threadsafe(coord.stop(), loop).result()
    ray.shutdown()

    # Baseline: the same rows, in-process, in batches of the size the server formed.
    w = BackboneWorker(model)
    keys = {f"task{i}": sha256_hex(b) for i, b in enumerate(blobs)}
    prompts = {sha256_hex(b): b for b in blobs}
    tasks = dict.fromkeys(prompts, TASK)
    rows = [(keys[ref], text) for req in requests for ref, text in req]
    w.classify(rows[:avg_batch], prompts, tasks)
    t0 = time.perf_counter()
    for i in range(0, len(rows), avg_batch):
        w.classify(rows[i : i + avg_batch], {}, tasks)
    local_s = time.perf_counter() - t0

    n_rows = a.requests * a.rows
    print(f"machine: {platform.machine()} {platform.system()}, torch threads {torch.get_num_threads()}; all-MiniLM-L6-v2; "
          f"{a.requests} requests x {a.rows} rows over {a.tasks} tasks, concurrency {a.concurrency}")
    print(f"served (gRPC -> coordinator -> Ray actor): {n_rows / served_s:7.1f} rows/s  {a.requests / served_s:6.1f} req/s  "
          f"p50 {statistics.median(lat) * 1e3:6.1f} ms  p99 {percentile(lat, 0.99) * 1e3:6.1f} ms  "
          f"({batches} batches, {batch_rows / max(1, batches):.1f} rows/batch)")
    print(f"in-process worker, same rows, {avg_batch}-row batches: {n_rows / local_s:7.1f} rows/s")
    print(f"  served / in-process throughput: {local_s / served_s:.3f}  (goal >= 0.90)")


if __name__ == "__main__":
    main()
