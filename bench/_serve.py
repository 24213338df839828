"""What the served benches share: a coordinator process on loopback, prompts imported into it, and a load loop.

Every served bench (e2e, ts_client, soak, read_path) starts `python -m coordinator` as its own process with a
SQLite bank in a temp dir and a local Ray, imports random prompts through PEFT files, and keeps N Classify
calls in flight from an asyncio client; one copy of each of those steps lives here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import torch

from bank.codec import decode_prompt, encode_prompt
from bank.peft_format import export_peft
from promptbank import Client
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import inference_pb2_grpc as inf_grpc

TASK = {"labels": ["negative", "positive"]}
Requests = list[list[tuple[str, str]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def coordinator_process(tmp: Path, *args: str, stop_timeout: float = 120, env: dict[str, str] | None = None
                        ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m coordinator` on a free loopback port with its bank in `tmp`; yields (address, process) once it
    reports SERVING, and stops it (SIGTERM) on exit. Its log is `tmp/server.log`; `env` adds variables."""
    port = free_port()
    with open(tmp / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "coordinator", "--port", str(port),
                                 "--db", str(tmp / "bank.db"), *args],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RAY_ADDRESS": "", **(env or {})})
        address = f"127.0.0.1:{port}"
        try:
            with Client(address, timeout=120) as c:
                c.wait_ready(timeout=300)
            yield address, proc
        finally:
            proc.terminate()
            proc.wait(timeout=stop_timeout)


def random_prompts(n: int, tokens: int = 20, dim: int = 384, seed: int = 0) -> list[bytes]:
    g = torch.Generator().manual_seed(seed)
    return [encode_prompt(torch.randn(tokens, dim, generator=g) * 0.5) for _ in range(n)]


def import_prompts(client: Client, model: str, blobs: list[bytes], backbone: str = "minilm") -> None:
    """Import each prompt as `task{i}` on the served `backbone` (loaded from `model`), through PEFT files."""
    for i, b in enumerate(blobs):
        tokens, dim = decode_prompt(b).shape
        cfg, weights = export_peft(b, base_model=model, revision="", architecture="encoder",
                                   num_virtual_tokens=tokens, token_dim=dim, task=TASK, extra=None)
        client.import_version(f"task{i}", backbone, cfg, weights, labels=TASK["labels"])


def mixed_requests(texts: list[str], n: int, rows: int, tasks: int) -> Requests:
    """`n` requests of `rows` rows each, row j of request i on task (i + j) mod `tasks`: every batch mixes tasks."""
    return [[(f"task{(i + j) % tasks}", texts[(i * rows + j) % len(texts)]) for j in range(rows)] for i in range(n)]


class Load:
    """Keeps `concurrency` Classify calls in flight until `requests` are done; records latencies and errors."""

    def __init__(self, address: str, requests: Requests, concurrency: int):
        self.address, self.requests, self.concurrency = address, requests, concurrency
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    async def run(self, on_done: int = 0, callback: Callable[[], None] | None = None) -> float:
        """Seconds for all requests; `callback` runs once, after the `on_done`-th answer."""
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

    def timed(self) -> float:
        return asyncio.run(self.run())
