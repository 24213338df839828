"""Classify throughput with a backbone's replicas on two Ray nodes vs on one, side by side on one local cluster.

    python bench/multinode.py [--requests 400] [--concurrency 16] [--rows 4] [--tasks 8] [--rounds 2] [--json PATH] [--quick]

Starts a two-node Ray cluster on this machine as tests/test_multinode.py does (`ray start --head` and `ray start
--address`, one CPU and a resource of its own each, Ray's token auth on), then, in alternating rounds, a
coordinator process joining it (SQLite bank in a temp dir, the packaged MiniLM, two replicas of half a CPU each):
`--placement spread` (one replica on each node) and `--worker-resource node_a=1` (both replicas on the head
node). Each round imports `--tasks` prompts and keeps `--concurrency` Classify calls of `--rows` rows (tasks
mixed) in flight until `--requests` are done, after a warm-up. Reports the median rows/s of each and their ratio.
On one machine both nodes share its cores, so the ratio shows what spreading over nodes costs (objects and
calls crossing to another raylet), not what a second machine adds; there is no goal.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

from _record import ROOT, Record, add_flags
from _serve import Load, coordinator_process, import_prompts, mixed_requests, random_prompts
from _timing import percentile

sys.path.insert(0, str(ROOT))
from coordinator.config import packaged_minilm  # noqa: E402
from promptbank import Client  # noqa: E402
from promptbank.data import tweet_tasks  # noqa: E402
from tests.processes import RayHead, RayWorkerNode  # noqa: E402  (the tests' own cluster, one copy)

LAYOUTS = {"two nodes": ("--placement", "spread"), "one node": ("--worker-resource", "node_a=1", "--placement", "pack")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.requests, a.concurrency, a.rounds = 16, 4, 1
    rec = Record("multinode", vars(a), a.quick)
    model = packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:512]]
    requests = mixed_requests(texts, a.requests, a.rows, a.tasks)
    token = secrets.token_hex(32)
    head = RayHead(cpus=1, resources={"node_a": 2}, token=token)
    runs: dict[str, list[tuple[float, list[float]]]] = {k: [] for k in LAYOUTS}
    nodes: dict[str, int] = {}
    try:
        node = RayWorkerNode(head, cpus=1, resources={"node_b": 2})
        try:
            for r in range(a.rounds):
                for layout, flags in LAYOUTS.items():
                    tmp = Path(tempfile.mkdtemp(prefix="pb-multinode-"))
                    with coordinator_process(tmp, "--ray-address", head.address, "--backbone", f"minilm={model}",
                                             "--replicas", "2", "--worker-cpus", "0.5", *flags,
                                             env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}) as (address, _):
                        with Client(address, timeout=120) as c:
                            import_prompts(c, model, random_prompts(a.tasks))
                            nodes[layout] = len({x.node_id for x in c.get_backbone("minilm").serving})
                        Load(address, requests[: 2 * a.concurrency], a.concurrency).timed()  # warm-up
                        load = Load(address, requests, a.concurrency)
                        runs[layout].append((load.timed(), load.latencies))
                        if load.errors:
                            raise SystemExit(f"{layout}: requests failed: {load.errors}")
                    print(f"round {r + 1}, {layout}: {a.requests * a.rows / runs[layout][-1][0]:7.1f} rows/s", flush=True)
        finally:
            node.stop()
    finally:
        head.stop()
    if nodes != {"two nodes": 2, "one node": 1}:
        raise SystemExit(f"replicas were not placed as asked: nodes used per layout {nodes}")

    n_rows = a.requests * a.rows
    rate = {k: statistics.median(n_rows / s for s, _ in v) for k, v in runs.items()}
    p99 = {k: statistics.median(percentile(lat, 0.99) for _, lat in v) for k, v in runs.items()}
    print(f"machine: {os.cpu_count()} CPUs; all-MiniLM-L6-v2, 2 replicas; {a.requests} requests x {a.rows} rows over "
          f"{a.tasks} tasks, concurrency {a.concurrency}; median of {a.rounds} round(s)")
    for k in LAYOUTS:
        print(f"  replicas on {k}: {rate[k]:7.1f} rows/s  p99 {p99[k] * 1e3:7.1f} ms")
    print(f"  two nodes / one node throughput: {rate['two nodes'] / rate['one node']:.3f}")
    for k in LAYOUTS:
        rec.figure(f"Classify throughput, replicas on {k}", rate[k], "rows/s", decimals=1)
        rec.figure(f"latency p99, replicas on {k}", p99[k] * 1e3, "ms", decimals=1)
    rec.figure("two nodes / one node throughput", rate["two nodes"] / rate["one node"], decimals=3)
    rec.note("a two-node Ray cluster on one machine (1 CPU each; half a CPU per replica); both "
             "nodes share the machine's cores, so the ratio is the cost of crossing nodes, not a second machine's gain")
    rec.write(a.json)


if __name__ == "__main__":
    main()
