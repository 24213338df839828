"""Soak: many mixed-task Classify requests at high concurrency against a coordinator process; errors, latency,
and whether the coordinator's and its workers' memory keeps growing.

    python bench/soak.py [--requests 10000] [--concurrency 64] [--rows 2] [--tasks 8] [--model PATH] [--json PATH]

Starts `python -m coordinator` as its own process (SQLite in a temp dir, local Ray, the packaged MiniLM unless
--model names another local model), imports `--tasks` prompts, then keeps `--concurrency` Classify calls in
flight until `--requests` are done. Memory (RSS, from /proc) of the coordinator and of its Ray workers is read
after the first tenth of the requests (warm-up) and at the end. Goals: zero errors; RSS growth after warm-up
<= 10% for the coordinator and for the workers. tests/test_soak.py runs a 1,000-request version.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

import psutil
from _record import Record, add_flags
from _serve import Load, coordinator_process, import_prompts, mixed_requests, random_prompts
from _timing import percentile

from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank.data import tweet_tasks

WORKER_TITLE = "ray::BackboneWorker"  # Ray names an actor's process after its class


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def worker_pids(root: int) -> list[int]:
    """The Ray actor processes under `root` that hold a backbone."""
    pids = []
    for p in psutil.Process(root).children(recursive=True):
        try:
            if " ".join(p.cmdline()).startswith(WORKER_TITLE):
                pids.append(p.pid)
        except psutil.Error:
            pass
    return pids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--model", default="", help="a local model folder (default: the packaged all-MiniLM-L6-v2)")
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.requests, a.concurrency = 200, 16
    rec = Record("soak", vars(a), a.quick)
    model = a.model or packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:512]]
    requests = mixed_requests(texts, a.requests, a.rows, a.tasks)

    tmp = Path(tempfile.mkdtemp(prefix="pb-soak-"))
    with coordinator_process(tmp, "--backbone", f"soak={model}") as (address, server):
        with Client(address, timeout=120) as c:
            hidden = c.list_backbones()[0].hidden_size
            import_prompts(c, model, random_prompts(a.tasks, tokens=8, dim=hidden), backbone="soak")
        warm: dict[str, float] = {}

        def after_warm_up() -> None:
            warm["coordinator"] = rss_mb(server.pid)
            warm["workers"] = sum(rss_mb(p) for p in worker_pids(server.pid))

        load = Load(address, requests, a.concurrency)
        elapsed = asyncio.run(load.run(max(1, a.requests // 10), after_warm_up))
        end = {"coordinator": rss_mb(server.pid), "workers": sum(rss_mb(p) for p in worker_pids(server.pid))}
        memory = {k: (warm[k], end[k]) for k in end}

    lat = load.latencies
    errors = sum(load.errors.values())
    print(f"soak: {a.requests} requests x {a.rows} rows over {a.tasks} tasks, concurrency {a.concurrency}, "
          f"{os.cpu_count()} CPUs, model {Path(model).name}")
    print(f"  {a.requests / elapsed:.1f} req/s; p50 {statistics.median(lat) * 1e3:.1f} ms, "
          f"p99 {percentile(lat, 0.99) * 1e3:.1f} ms; errors {errors} {load.errors or ''}")
    rec.figure("requests", a.requests, decimals=0)
    rec.figure("errors", errors, decimals=0, goal="<= 0")
    rec.figure("throughput", a.requests / elapsed, "req/s", decimals=1)
    rec.figure("latency p50", statistics.median(lat) * 1e3, "ms", decimals=1)
    rec.figure("latency p99", percentile(lat, 0.99) * 1e3, "ms", decimals=1)
    for who, (before, after) in memory.items():
        growth = after / before - 1 if before else float("nan")
        print(f"  {who} RSS {before:.0f} MB after warm-up -> {after:.0f} MB at the end ({growth:+.1%})")
        rec.figure(f"{who} RSS after warm-up", before, "MB", decimals=0)
        rec.figure(f"{who} RSS growth after warm-up", growth, decimals=3, goal="<= 0.10")
    rec.note(f"warm-up = the first {max(1, a.requests // 10)} requests; workers = the coordinator's Ray actor "
             f"processes; client, coordinator and workers share the machine's cores")
    rec.write(a.json)
    sys.exit(0 if errors == 0 else 1)


if __name__ == "__main__":
    main()
