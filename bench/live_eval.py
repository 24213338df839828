"""Live evaluation's cost: Classify throughput with a shadow on every row vs none, and outcomes recorded per second.

    python bench/live_eval.py [--rounds 5] [--requests 96] [--rows 8] [--outcomes 50000] [--json PATH] [--quick]

Starts `python -m coordinator` (SQLite in a temp dir, local Ray, the packaged MiniLM), imports two versions of
one task, points alias `plain` at version 1 and alias `shadowed` at version 1 with version 2 as its shadow, and
times the same requests on each alias in alternating rounds (shadowed, plain, then plain, shadowed, ...). Every
row of both is kept for its outcome. Goal: shadowed / plain throughput >= 0.9. A shadow is one more row in the
same forward, so the forward's own cost of twice the rows bounds the ratio: the bench also times the in-process
worker on the same rows alone and doubled (the ceiling), and reports the served ratio against it.

Outcomes: `--outcomes` served rows are written into the server's bank, then their true labels are sent in
RecordOutcomes calls of 10,000 (over gRPC, into the running server), and once more straight into a fresh
SQLite bank through the bank's functions. Goal: >= 10,000 outcomes/s.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import grpc
from _record import Record, add_flags
from _serve import TASK, Load, coordinator_process, random_prompts
from _timing import paired_medians
from google.protobuf.field_mask_pb2 import FieldMask

from bank import catalog, outcomes
from bank.codec import decode_prompt, sha256_hex
from bank.db import make_engine, make_sessionmaker
from bank.models import PromptVersion
from bank.peft_format import export_peft
from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank.data import tweet_tasks
from promptbank_api.v1 import live_pb2 as live
from promptbank_api.v1 import live_pb2_grpc as live_grpc
from promptbank_domain.live import ServedRow
from promptbank_domain.task import TaskSpec
from workers.actor import BackboneWorker
from workers.protocol import ClassifyBatch

BATCH = 10_000  # outcomes per RecordOutcomes call


def import_versions(c: Client, model: str, blobs: list[bytes]) -> None:
    for b in blobs:
        tokens, dim = decode_prompt(b).shape
        cfg, weights = export_peft(b, base_model=model, revision="", architecture="encoder", num_virtual_tokens=tokens,
                                   token_dim=dim, task=TASK, extra=None)
        c.import_version("sent", "minilm", cfg, weights, labels=TASK["labels"])


def served_rows(n: int, version_id: int) -> list[ServedRow]:
    at = datetime.now(UTC).replace(tzinfo=None)
    return [ServedRow(result_id=secrets.token_hex(16), version_id=version_id, label=i % 2, at=at) for i in range(n)]


def seed(db_url: str, n: int) -> list[ServedRow]:
    """`n` served rows of `sent` version 1, written into the bank at `db_url` (the server's, or a fresh one)."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        vid = s.query(PromptVersion.id).filter(PromptVersion.version == 1).scalar()
        rows = served_rows(n, int(vid))
        for i in range(0, n, BATCH):
            outcomes.record_served(s, rows[i:i + BATCH])
        s.commit()
    engine.dispose()
    return rows


def bank_rate(tmp: Path, model: str, n: int) -> float:
    """Outcomes/s straight into a fresh SQLite bank (no server): the bank's own cost."""
    url = str(tmp / "direct.db")
    engine = make_engine(url)  # creates the schema
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        catalog.upsert_backbone(s, "minilm", model=model, revision="", architecture="encoder", hidden_size=384,
                                fingerprint="f" * 64)
        catalog.create_prompt(s, "sent", TaskSpec.from_dict(TASK))
        catalog.add_version(s, "sent", "minilm", random_prompts(1)[0], metrics={}, lineage={})
        s.commit()
    engine.dispose()
    rows = seed(url, n)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        with sessions() as s:
            outcomes.record_outcomes(s, [(r.result_id, TASK["labels"][(j + i) % 3 % 2])
                                         for j, r in enumerate(rows[i:i + BATCH])])
            s.commit()
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return n / elapsed


def forward_ceiling(model: str, blobs: list[bytes], texts: list[str], repeats: int) -> float:
    """Answered rows/s when every row is scored twice (under two prompts, one batch) over rows/s when once, on an
    in-process worker: what a shadow costs the forward itself, with no service around it."""
    w = BackboneWorker(model)
    keys = [sha256_hex(b) for b in blobs]
    prompts = {sha256_hex(b): b for b in blobs}
    tasks = dict.fromkeys(prompts, TaskSpec.from_dict(TASK))
    single = [(keys[0], t) for t in texts]
    double = single + [(keys[1], t) for t in texts]
    one_s, two_s = paired_medians(lambda: w.classify(ClassifyBatch(single, prompts, tasks)),
                                  lambda: w.classify(ClassifyBatch(double, prompts, tasks)), repeats)
    return one_s / two_s


def main() -> None:
    ap = __import__("argparse").ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--outcomes", type=int, default=50_000)
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.requests, a.rows, a.concurrency, a.outcomes = 1, 8, 4, 4, 2_000
    rec = Record("live_eval", vars(a), a.quick)
    warnings.filterwarnings("ignore")
    model = packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][:256]]
    blobs = random_prompts(2)

    ceiling = forward_ceiling(model, blobs, texts[:64], max(3, a.rounds * 2))
    tmp = Path(tempfile.mkdtemp(prefix="pb-live-"))
    with coordinator_process(tmp, stop_timeout=60) as (address, _), Client(address, timeout=120) as c:
        import_versions(c, model, blobs)
        c.set_alias("sent", "plain", 1)
        c.set_alias("sent", "shadowed", 1)
        with grpc.insecure_channel(address) as ch:
            stub = live_grpc.LiveEvaluationStub(ch)
            stub.UpdateRollout(live.UpdateRolloutRequest(
                rollout=live.Rollout(name="prompts/sent/aliases/shadowed/rollout", shadow_version="sent/versions/2"),
                update_mask=FieldMask(paths=["shadow_version"])), timeout=60)

            def requests(alias: str) -> list[list[tuple[str, str]]]:
                return [[(f"sent@{alias}", texts[(i * a.rows + j) % len(texts)]) for j in range(a.rows)]
                        for i in range(a.requests)]

            plain, shadowed = requests("plain"), requests("shadowed")
            Load(address, plain[: a.concurrency], a.concurrency).timed()  # warm-up, both
            Load(address, shadowed[: a.concurrency], a.concurrency).timed()
            ratios, rates = [], {"plain": [], "shadowed": []}
            for r in range(a.rounds):
                order = (("shadowed", shadowed), ("plain", plain)) if r % 2 == 0 else (("plain", plain), ("shadowed", shadowed))
                took: dict[str, float] = {}
                for name, reqs in order:
                    load = Load(address, reqs, a.concurrency)
                    took[name] = load.timed()
                    if load.errors:
                        raise SystemExit(f"{name} requests failed: {load.errors}")
                    rates[name].append(a.requests * a.rows / took[name])
                ratios.append(took["plain"] / took["shadowed"])

            rows = seed(str(tmp / "bank.db"), a.outcomes)
            t0 = time.perf_counter()
            recorded = 0
            for i in range(0, len(rows), BATCH):
                resp = stub.RecordOutcomes(live.RecordOutcomesRequest(outcomes=[
                    live.Outcome(result_id=r.result_id, label=TASK["labels"][(j + i) % 3 % 2])
                    for j, r in enumerate(rows[i:i + BATCH])]), timeout=300)
                recorded += resp.recorded
            rpc_rate = len(rows) / (time.perf_counter() - t0)
        if recorded != len(rows):
            raise SystemExit(f"RecordOutcomes recorded {recorded} of {len(rows)}")
    direct_rate = bank_rate(tmp, model, a.outcomes)

    ratio = statistics.median(ratios)
    print(f"plain: {statistics.median(rates['plain']):.1f} rows/s, shadowed: {statistics.median(rates['shadowed']):.1f} "
          f"rows/s; shadowed/plain {ratio:.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}); ceiling {ceiling:.3f}")
    print(f"outcomes: {rpc_rate:.0f}/s over gRPC, {direct_rate:.0f}/s into the bank")
    rec.figure("Classify throughput, no shadow", statistics.median(rates["plain"]), "rows/s", decimals=1)
    rec.figure("Classify throughput, shadow on every row", statistics.median(rates["shadowed"]), "rows/s", decimals=1)
    rec.figure("shadow / no shadow throughput (median of rounds)", ratio, decimals=3, goal=">= 0.9")
    rec.figure("shadow / no shadow, lowest round", min(ratios), decimals=3)
    rec.figure("shadow / no shadow, highest round", max(ratios), decimals=3)
    rec.figure("ceiling: forward of 64 rows / of 64 rows doubled, in-process (rows/s ratio)", ceiling, decimals=3)
    rec.figure("shadow ratio / ceiling", ratio / ceiling, decimals=3, goal=">= 0.9")
    rec.figure("outcomes recorded over gRPC (RecordOutcomes, 10,000 per call)", rpc_rate, "outcomes/s", decimals=0,
               goal=">= 10000")
    rec.figure("outcomes recorded into the bank (SQLite, 10,000 per transaction)", direct_rate, "outcomes/s",
               decimals=0, goal=">= 10000")
    rec.note(f"{a.requests} requests x {a.rows} rows per round, {a.concurrency} in flight, {a.rounds} alternating "
             f"rounds; the ratio is the median over rounds with its range; every row kept for its outcome on both "
             f"sides; ceiling: in-process worker, 64 rows vs the same 64 rows under two prompts, alternating")
    rec.write(a.json)


if __name__ == "__main__":
    main()
