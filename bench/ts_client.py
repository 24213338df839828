"""The TypeScript SDK vs the Python SDK: Classify rows/s through each, at the same concurrency, on one server.

    python bench/ts_client.py [--concurrency 32] [--requests 512] [--rows 4] [--tasks 8] [--rounds 3] [--json PATH] [--quick]

Starts `python -m coordinator` as its own process (SQLite in a temp dir, local Ray, the packaged MiniLM) and
imports `--tasks` prompts, as bench/e2e.py does. Then, in `--rounds` alternating rounds (TypeScript first, then
Python), each client keeps `--concurrency` Classify calls of `--rows` rows (tasks mixed) in flight until
`--requests` are done, after a warm-up of 2 x concurrency requests on a fresh connection: the TypeScript SDK from
a Node process (clients/typescript/bench/classify_load.mjs, promises), the Python SDK from this process
(`Client.classify` from `--concurrency` threads on one channel). Reports the median rows/s of each and their
ratio. Goal: TypeScript / Python >= 0.90 (the SDK must not be the bottleneck). Both clients share the
machine's cores with the server, so a client that costs more CPU per call shows up as fewer rows/s.
Needs Node.js >= 20; runs `npm ci` in clients/typescript when its build is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

from _record import ROOT, Record, add_flags
from _serve import Requests, coordinator_process, import_prompts, mixed_requests, random_prompts
from _timing import percentile

from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank.data import tweet_tasks

PKG = ROOT / "clients" / "typescript"


def ensure_built() -> None:
    """The TypeScript SDK's dist/ (`npm ci` builds it through the package's prepare script)."""
    if not (PKG / "dist" / "index.js").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PKG, check=True)


def python_round(address: str, requests: Requests, concurrency: int, warmup: int) -> tuple[float, list[float]]:
    """(seconds, latencies in ms) of `requests` through the Python SDK from `concurrency` threads."""
    with Client(address, timeout=300) as c:
        def load(reqs: Requests) -> tuple[float, list[float]]:
            lock, lat, nxt = threading.Lock(), [], iter(reqs)

            def worker() -> None:
                while True:
                    with lock:
                        req = next(nxt, None)
                    if req is None:
                        return
                    t = time.perf_counter()
                    c.classify(req)
                    lat.append((time.perf_counter() - t) * 1e3)

            threads = [threading.Thread(target=worker) for _ in range(concurrency)]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            return time.perf_counter() - t0, lat

        load(requests[:warmup])
        return load(requests)


def ts_round(address: str, requests: Requests, concurrency: int, warmup: int, tmp: Path) -> tuple[float, list[float]]:
    """(seconds, latencies in ms) of `requests` through the TypeScript SDK in a Node process."""
    spec = tmp / "load.json"
    spec.write_text(json.dumps({"address": address, "concurrency": concurrency, "warmup": warmup,
                                "requests": requests}))
    out = subprocess.run(["node", str(PKG / "bench" / "classify_load.mjs"), str(spec)], cwd=PKG, check=True,
                         capture_output=True, text=True, timeout=1800)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), [float(x) for x in result["latencies_ms"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per client; the median counts")
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.concurrency, a.requests, a.rows, a.tasks, a.rounds = 2, 8, 2, 2, 1
    rec = Record("ts_client", vars(a), a.quick)
    warnings.filterwarnings("ignore")
    ensure_built()
    model = packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:256]]
    blobs = random_prompts(a.tasks)
    requests = mixed_requests(texts, a.requests, a.rows, a.tasks)
    warmup = 2 * a.concurrency

    tmp = Path(tempfile.mkdtemp(prefix="pb-ts-client-"))
    runs: dict[str, list[tuple[float, list[float]]]] = {"ts": [], "py": []}
    with coordinator_process(tmp, stop_timeout=60) as (address, _):
        with Client(address, timeout=120) as c:
            import_prompts(c, model, blobs)
        for r in range(a.rounds):
            runs["ts"].append(ts_round(address, requests, a.concurrency, warmup, tmp))
            runs["py"].append(python_round(address, requests, a.concurrency, warmup))
            print(f"round {r + 1}: TypeScript {len(requests) * a.rows / runs['ts'][-1][0]:7.1f} rows/s, "
                  f"Python {len(requests) * a.rows / runs['py'][-1][0]:7.1f} rows/s", flush=True)

    n_rows = a.requests * a.rows
    rate = {k: statistics.median(n_rows / s for s, _ in v) for k, v in runs.items()}
    p50 = {k: statistics.median(statistics.median(lat) for _, lat in v) for k, v in runs.items()}
    p99 = {k: statistics.median(percentile(lat, 0.99) for _, lat in v) for k, v in runs.items()}
    print(f"machine: {os.cpu_count()} CPUs; all-MiniLM-L6-v2; {a.requests} requests x {a.rows} rows over {a.tasks} "
          f"tasks, concurrency {a.concurrency}, {a.rounds} alternating round(s) per client (median)")
    for k, name in (("ts", "TypeScript SDK (Node)"), ("py", "Python SDK (threads)")):
        print(f"{name:22s} {rate[k]:7.1f} rows/s  p50 {p50[k]:6.1f} ms  p99 {p99[k]:6.1f} ms")
    print(f"  TypeScript / Python throughput: {rate['ts'] / rate['py']:.3f}  (goal >= 0.90)")
    rec.figure("TypeScript SDK throughput", rate["ts"], "rows/s", decimals=1)
    rec.figure("Python SDK throughput", rate["py"], "rows/s", decimals=1)
    rec.figure("TypeScript SDK latency p50", p50["ts"], "ms", decimals=1)
    rec.figure("Python SDK latency p50", p50["py"], "ms", decimals=1)
    rec.figure("TypeScript / Python SDK throughput", rate["ts"] / rate["py"], decimals=3, goal=">= 0.90")
    rec.details["rounds_rows_per_s"] = {k: [n_rows / s for s, _ in v] for k, v in runs.items()}
    rec.details["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    rec.note(f"{a.requests} requests x {a.rows} rows over {a.tasks} tasks, {a.concurrency} in flight from each client "
             f"in turn ({a.rounds} alternating rounds, medians); clients and server share the machine's cores")
    rec.write(a.json)


if __name__ == "__main__":
    main()
