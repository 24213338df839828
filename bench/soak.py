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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import torch
from _record import Record, add_flags
from _timing import percentile

from bank.codec import encode_prompt
from bank.peft_format import export_peft
from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank.data import tweet_tasks
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import inference_pb2_grpc as inf_grpc

TASK = {"labels": ["negative", "positive"]}
WORKER_TITLE = "ray::BackboneWorker"  # Ray names an actor's process after its class


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(root: int) -> list[int]:
    """Every live process under `root` (from /proc: each process's parent)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def worker_pids(root: int) -> list[int]:
    pids = []
    for pid in descendants(root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(WORKER_TITLE.encode()):
                pids.append(pid)
        except OSError:
            pass
    return pids


class Load:
    def __init__(self, address: str, requests: list[list[tuple[str, str]]], concurrency: int):
        self.address, self.requests, self.concurrency = address, requests, concurrency
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    async def run(self, on_done: int = 0, callback=None) -> float:  # type: ignore[no-untyped-def]
        async with grpc.aio.insecure_channel(self.address) as ch:
            stub = inf_grpc.InferenceStub(ch)
            queue: asyncio.Queue[list[tuple[str, str]]] = asyncio.Queue()
            for r in self.requests:
                queue.put_nowait(r)
            done = 0

            async def worker() -> None:
                nonlocal done
                while not queue.empty():
                    req = queue.get_nowait()
                    t = time.perf_counter()
                    try:
                        resp = await stub.Classify(
                            inf.ClassifyRequest(rows=[inf.ClassifyRow(prompt=p, text=x) for p, x in req]), timeout=300)
                        if len(resp.results) != len(req):
                            self.errors["wrong result count"] = self.errors.get("wrong result count", 0) + 1
                    except grpc.aio.AioRpcError as exc:
                        self.errors[exc.code().name] = self.errors.get(exc.code().name, 0) + 1
                    self.latencies.append(time.perf_counter() - t)
                    done += 1
                    if callback is not None and done == on_done:
                        callback()

            t0 = time.perf_counter()
            await asyncio.gather(*[worker() for _ in range(self.concurrency)])
            return time.perf_counter() - t0


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
    requests = [[(f"task{(i + j) % a.tasks}", texts[(i * a.rows + j) % len(texts)]) for j in range(a.rows)]
                for i in range(a.requests)]

    tmp = Path(tempfile.mkdtemp(prefix="pb-soak-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "coordinator", "--port", str(port), "--db", str(tmp / "bank.db"),
                               "--backbone", f"soak={model}"],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RAY_ADDRESS": ""})
    address = f"127.0.0.1:{port}"
    memory: dict[str, tuple[float, float]] = {}
    try:
        with Client(address, timeout=120) as c:
            c.wait_ready(timeout=300)
            bb = c.list_backbones()[0]
            g = torch.Generator().manual_seed(0)
            for i in range(a.tasks):
                blob = encode_prompt(torch.randn(8, bb.hidden_size, generator=g) * 0.5)
                cfg, weights = export_peft(blob, base_model=model, revision="", architecture="encoder",
                                           num_virtual_tokens=8, token_dim=bb.hidden_size, task=TASK, extra=None)
                c.import_version(f"task{i}", "soak", cfg, weights, labels=TASK["labels"])
        warm: dict[str, float] = {}

        def after_warm_up() -> None:
            warm["coordinator"] = rss_mb(server.pid)
            warm["workers"] = sum(rss_mb(p) for p in worker_pids(server.pid))

        load = Load(address, requests, a.concurrency)
        elapsed = asyncio.run(load.run(max(1, a.requests // 10), after_warm_up))
        end = {"coordinator": rss_mb(server.pid), "workers": sum(rss_mb(p) for p in worker_pids(server.pid))}
        memory = {k: (warm[k], end[k]) for k in end}
    finally:
        server.terminate()
        server.wait(timeout=120)
        log.close()

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
