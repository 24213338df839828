"""A REST/JSON Classify vs a gRPC Classify of the same rows, side by side in one run on one server.

    python bench/rest.py [--rounds 200] [--rows 32] [--tasks 4] [--json PATH] [--quick]

Starts `python -m coordinator --http-port P` as its own process (SQLite in a temp dir, local Ray, the packaged
MiniLM), imports `--tasks` random prompts, then sends the same request of `--rows` rows (tasks mixed) once over
gRPC (the generated stub) and once over REST (`POST /v1/prompts:classify` on a kept-alive HTTP connection) per
round, alternating which goes first, one call at a time. Each transport's cost is its median latency, client
encoding and decoding included; the answers are checked to be equal. Goal: REST / gRPC <= 1.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import requests
import torch
from _record import Record, add_flags
from _serve import coordinator_process, free_port, import_prompts, mixed_requests, random_prompts
from _timing import percentile
from google.protobuf import json_format

from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank.data import tweet_tasks
from promptbank_api.v1 import inference_pb2 as inf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--tasks", type=int, default=4)
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.rows, a.tasks = 6, 4, 2
    rec = Record("rest", vars(a), a.quick)
    warnings.filterwarnings("ignore")
    model = packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:512]]
    blobs = random_prompts(a.tasks)
    rounds = mixed_requests(texts, a.rounds, a.rows, a.tasks)
    http_port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="pb-rest-"))
    grpc_s: list[float] = []
    rest_s: list[float] = []
    with coordinator_process(tmp, "--http-port", str(http_port), stop_timeout=60) as (address, _), \
            Client(address, timeout=120) as c, requests.Session() as http:
        import_prompts(c, model, blobs)
        url = f"http://127.0.0.1:{http_port}/v1/prompts:classify"

        def via_grpc(rows: list[tuple[str, str]]) -> inf.ClassifyResponse:
            return c.inference.Classify(inf.ClassifyRequest(rows=[inf.ClassifyRow(prompt=p, text=t) for p, t in rows]),
                                        timeout=120)

        def via_rest(rows: list[tuple[str, str]]) -> inf.ClassifyResponse:
            r = http.post(url, json={"rows": [{"prompt": p, "text": t} for p, t in rows]}, timeout=120)
            r.raise_for_status()
            return json_format.ParseDict(r.json(), inf.ClassifyResponse())

        def answers(resp: inf.ClassifyResponse) -> list[tuple[str, str, list[float]]]:
            """What was answered, without each row's own result id."""
            return [(r.version, r.label, [s.score for s in r.scores]) for r in resp.results]

        for rows in rounds[:5]:  # warm-up: prompts cached on the replica, connections open
            assert answers(via_grpc(rows)) == answers(via_rest(rows)), "REST and gRPC answered differently"
        for i, rows in enumerate(rounds):
            order = ((via_grpc, grpc_s), (via_rest, rest_s))
            for call, times in order if i % 2 == 0 else order[::-1]:
                t = time.perf_counter()
                call(rows)
                times.append(time.perf_counter() - t)
    g50, r50 = statistics.median(grpc_s), statistics.median(rest_s)
    ratio = r50 / g50
    print(f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}; all-MiniLM-L6-v2; {a.rounds} rounds of one {a.rows}-row Classify "
          f"({a.tasks} tasks mixed) per transport, one call at a time, alternating")
    print(f"gRPC Classify: p50 {g50 * 1e3:7.2f} ms  p99 {percentile(grpc_s, 0.99) * 1e3:7.2f} ms")
    print(f"REST Classify: p50 {r50 * 1e3:7.2f} ms  p99 {percentile(rest_s, 0.99) * 1e3:7.2f} ms")
    print(f"  REST / gRPC (p50): {ratio:.3f}  (goal <= 1.10); mean ratio {statistics.mean(rest_s) / statistics.mean(grpc_s):.3f}")
    rec.figure("gRPC Classify latency p50", g50 * 1e3, "ms", decimals=2)
    rec.figure("REST Classify latency p50", r50 * 1e3, "ms", decimals=2)
    rec.figure("gRPC Classify latency p99", percentile(grpc_s, 0.99) * 1e3, "ms", decimals=2)
    rec.figure("REST Classify latency p99", percentile(rest_s, 0.99) * 1e3, "ms", decimals=2)
    rec.figure("REST / gRPC Classify cost (p50)", ratio, decimals=3, goal="<= 1.10")
    rec.figure("REST / gRPC Classify cost (mean)", statistics.mean(rest_s) / statistics.mean(grpc_s), decimals=3)
    rec.note(f"{a.rounds} rounds of one {a.rows}-row request ({a.tasks} tasks mixed) per transport, one call at a "
             "time, alternating which transport goes first; client JSON/protobuf encoding and decoding included; "
             "client, coordinator and actor share the machine's cores")
    rec.write(a.json)


if __name__ == "__main__":
    main()
