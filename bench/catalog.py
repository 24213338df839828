"""Catalog reads at scale: resolve+fetch and filtered list pages over 100k prompt versions, SQLite and PostgreSQL.

    python bench/catalog.py --backend sqlite|postgresql|both [--versions 100000] [--prompts 1000] [--json PATH] [--quick]

Fills a fresh catalog (prompts x versions of tiny safetensors prompts, 4 backbones, tags, `latest`/`prod`/
`staging` aliases) with bulk inserts through the real models and migrations, then times the store calls the
coordinator makes, one session per call as in an RPC (after ANALYZE of the fresh load), and prints p50/p99 per
operation. Goals: resolve+fetch p50 <= 2 ms, a list page p50 <= 20 ms. PostgreSQL is a throwaway local server
started as the tests start it (tests/pg_server.py), reached over loopback TCP; the tests run it with durability
off, the bench turns it back on (fsync, synchronous_commit, full_page_writes: PostgreSQL's defaults) before
loading, and records the server settings and the data directory's filesystem it ran with. SQLite runs as the
product opens it (WAL, synchronous=NORMAL), also recorded.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import sqlalchemy
import torch
from _record import Record, add_flags, filesystem_of
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from bank import catalog
from bank.codec import encode_prompt, sha256_hex
from bank.db import make_engine, make_sessionmaker
from bank.models import Alias, Backbone, Prompt, PromptVersion, utcnow

BACKBONES = ["enc-a", "enc-b", "lm-a", "lm-b"]
TAGS = [f"team-{i}" for i in range(10)] + ["en", "de", "fr", "es", "support", "legal", "ads", "search", "chat", "eval"]
HIDDEN, N_VIRTUAL = 8, 4
GOAL_RESOLVE_MS, GOAL_LIST_MS = 2.0, 20.0  # p50 goals
PG_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}  # PostgreSQL's defaults
PG_SHOWN = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "shared_buffers",
            "work_mem", "effective_cache_size", "random_page_cost", "jit", "max_connections")


def _pg_server():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.pg_server
    from tests.pg_server import start_server

    return start_server()


def _durable(srv) -> None:  # type: ignore[no-untyped-def]
    """Undo the tests' durability shortcuts on this throwaway server: PostgreSQL's defaults, reloaded."""
    with psycopg.connect(srv.url("postgres"), autocommit=True) as conn:
        for name, value in PG_DURABLE.items():
            conn.execute(f"ALTER SYSTEM SET {name} = {value}")  # type: ignore[arg-type]
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while True:  # the reload is a signal: wait until new sessions see it
        with psycopg.connect(srv.url("postgres")) as conn:
            now = {n: conn.execute(f"SHOW {n}").fetchone()[0] for n in PG_DURABLE}  # type: ignore[arg-type, index]
        if now == PG_DURABLE:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not take the durable settings: {now}")
        time.sleep(0.1)


def server_settings(engine: Engine, backend: str, data_dir: str) -> dict[str, object]:
    """What the figures depend on: the server's version and durability/planner settings, and the filesystem."""
    with engine.connect() as conn:
        if backend == "sqlite":
            out: dict[str, object] = {
                "sqlite_version": conn.execute(text("SELECT sqlite_version()")).scalar(),
                "journal_mode": conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                    conn.exec_driver_sql("PRAGMA synchronous").scalar(), "?"),  # type: ignore[call-overload]
            }
        else:
            out = {n: conn.execute(text(f"SHOW {n}")).scalar() for n in PG_SHOWN}
    out["data_dir_filesystem"] = filesystem_of(data_dir)
    return out


def fill(engine: Engine, n_prompts: int, per_prompt: int, rng: random.Random) -> dict[str, object]:
    """Bulk-load the catalog; returns what the samplers draw from."""
    g = torch.Generator().manual_seed(0)
    now = utcnow()
    with Session(engine) as s:
        s.execute(insert(Backbone), [
            {"name": n, "model": f"org/{n}", "revision": "main", "architecture": "encoder" if n.startswith("enc") else "causal_lm",
             "hidden_size": HIDDEN, "fingerprint": sha256_hex(n.encode()), "created_at": now} for n in BACKBONES])
        bb = {b.name: b for b in s.scalars(select(Backbone))}
        s.execute(insert(Prompt), [
            {"name": f"task-{i:05d}", "task": {"kind": "classification", "labels": ["neg", "pos"]}, "tags": sorted(rng.sample(TAGS, 2)),
             "owner": f"user{i % 37}", "latest_version": per_prompt, "created_at": now, "updated_at": now}
            for i in range(n_prompts)])
        prompts = {name: pid for name, pid in s.execute(select(Prompt.name, Prompt.id))}
        rows: list[dict[str, object]] = []
        for i, (name, pid) in enumerate(sorted(prompts.items())):
            home, other = BACKBONES[i % 4], BACKBONES[(i + 1) % 4]
            for v in range(1, per_prompt + 1):
                b = bb[other if i % 10 == 0 and v > per_prompt // 2 else home]  # a tenth moved to a second backbone
                blob = encode_prompt(torch.randn(N_VIRTUAL, HIDDEN, generator=g))
                rows.append({
                    "prompt_id": pid, "version": v, "backbone_id": b.id, "backbone_fingerprint": b.fingerprint,
                    "tensor": blob, "sha256": sha256_hex(blob), "shape": [N_VIRTUAL, HIDDEN], "dtype": "float32",
                    "metrics": {"eval_accuracy": round(rng.random(), 4)}, "lineage": {"job": f"jobs/{name}-{v}"},
                    "tags": [], "created_at": now})
                if len(rows) >= 5000:
                    s.execute(insert(PromptVersion), rows)
                    rows.clear()
        if rows:
            s.execute(insert(PromptVersion), rows)
        ids = {(p, v): i for i, p, v in s.execute(select(PromptVersion.id, PromptVersion.prompt_id, PromptVersion.version))}
        aliases = []
        for pid in prompts.values():
            for alias, v in (("latest", per_prompt), ("prod", rng.randint(1, per_prompt)), ("staging", rng.randint(1, per_prompt))):
                aliases.append({"prompt_id": pid, "name": alias, "version_id": ids[(pid, v)]})
        s.execute(insert(Alias), aliases)
        s.commit()
    with engine.begin() as conn:  # fresh statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` would keep
        conn.execute(text("ANALYZE"))
    return {"names": sorted(prompts), "per_prompt": per_prompt}


def percentiles(fn: Callable[[], object], n: int, warmup: int = 50) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[min(n - 1, int(round(0.99 * (n - 1))))]


def measure(sessions: sessionmaker[Session], cat: dict[str, object], rng: random.Random, samples: int) -> dict[str, tuple[float, float]]:
    names: list[str] = cat["names"]  # type: ignore[assignment]
    per: int = cat["per_prompt"]  # type: ignore[assignment]

    def resolve_fetch() -> None:
        name = rng.choice(names)
        ref = rng.choice([name, f"{name}@prod", f"{name}/versions/{rng.randint(1, per)}"])
        with sessions() as s:
            v = catalog.resolve(s, ref, tensor=True)
            assert len(v.tensor) > 0

    def list_filtered() -> None:
        with sessions() as s:
            catalog.list_prompts(s, rng.choice([0, 0, 50]), 50, tag=rng.choice(TAGS), backbone=rng.choice(BACKBONES))

    def list_by_tag() -> None:
        with sessions() as s:
            catalog.list_prompts(s, rng.choice([0, 50]), 50, tag=rng.choice(TAGS))

    def list_all() -> None:
        with sessions() as s:
            catalog.list_prompts(s, rng.randrange(0, max(1, len(names) - 50)), 50)

    def list_versions() -> None:
        with sessions() as s:
            catalog.list_versions(s, rng.choice(names), rng.randrange(0, max(1, per - 50)), 50)

    return {
        "resolve+fetch": percentiles(resolve_fetch, samples),
        "list_prompts tag+backbone": percentiles(list_filtered, max(100, samples // 5)),
        "list_prompts tag": percentiles(list_by_tag, max(100, samples // 5)),
        "list_prompts page": percentiles(list_all, max(100, samples // 5)),
        "list_versions page": percentiles(list_versions, max(100, samples // 5)),
    }


def run(backend: str, url: str, args: argparse.Namespace, rec: Record, data_dir: str) -> None:
    rng = random.Random(args.seed)
    t = time.perf_counter()
    engine = make_engine(url)
    per = max(1, args.versions // args.prompts)
    cat = fill(engine, args.prompts, per, rng)
    fill_s = time.perf_counter() - t
    settings = server_settings(engine, backend, data_dir)
    rec.details[backend] = settings
    server = settings["sqlite_version" if backend == "sqlite" else "server_version"]
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k not in ("sqlite_version", "server_version"))
    print(f"\n{backend} {server}: {args.prompts} prompts x {per} versions = {args.prompts * per} filled in "
          f"{fill_s:.1f} s\n  settings: {shown}")
    rec.note(f"{backend} {server}: {shown}")
    results = measure(make_sessionmaker(engine), cat, rng, args.samples)
    print(f"| {backend} | p50 ms | p99 ms | goal p50 |")
    print("|---|---|---|---|")
    rec.figure(f"{backend}: fill {args.prompts} prompts x {per} versions", fill_s, "s", decimals=1)
    for op, (p50, p99) in results.items():
        goal = GOAL_RESOLVE_MS if op == "resolve+fetch" else GOAL_LIST_MS
        print(f"| {op} | {p50:.2f} | {p99:.2f} | <= {goal:g} ms {'ok' if p50 <= goal else 'MISSED'} |")
        rec.figure(f"{backend}: {op} p50", p50, "ms", decimals=2, goal=f"<= {goal:g}")
        rec.figure(f"{backend}: {op} p99", p99, "ms", decimals=2)
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=2000, help="timed resolve calls (list calls: a fifth)")
    ap.add_argument("--seed", type=int, default=0)
    add_flags(ap)
    args = ap.parse_args()
    if args.quick:
        args.versions, args.prompts, args.samples = 200, 20, 20
    rec = Record("catalog", vars(args), args.quick)
    rec.settings.update(sqlalchemy=sqlalchemy.__version__, sqlite3_lib=sqlite3.sqlite_version)
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
          f"SQLAlchemy {sqlalchemy.__version__}, sqlite3 lib {sqlite3.sqlite_version}")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="promptbank-bench-") as d:
            run("sqlite", str(Path(d) / "bank.db"), args, rec, d)
    if args.backend in ("postgresql", "both"):
        srv = _pg_server()
        try:
            _durable(srv)
            run("postgresql", srv.create_database("bench"), args, rec, str(srv.base))
        finally:
            srv.stop()
    rec.note(f"p50/p99 over {args.samples} resolve+fetch calls and {max(100, args.samples // 5)} calls per list "
             "operation, one session per call, after 50 warm-up calls and ANALYZE")
    rec.write(args.json)


if __name__ == "__main__":
    main()
