"""SQLite under contention: 16 API clients writing at once (creates, tag updates, train jobs and their
events, alias moves) while another process writes to the same file from before their first write until after
their last. No "database is locked" reaches anyone, nothing is lost, and the bank's own timestamps show that
both sides wrote at the same time. (Left to itself the other process's 150 commits took 0.2 s, a few seconds
in, with 2 server writes among them: now it starts first and stops last.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from bank.db import make_engine, make_sessionmaker
from bank.models import AliasEvent, Job, JobEvent, Prompt, PromptVersion
from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.processes import ENV, ROOT
from tests.test_server import DATA, input_hp

WRITERS = 16
OUTSIDE = 150  # prompts the other process creates at least, one transaction each
HP = input_hp(num_virtual_tokens=2, epochs=2, batch_size=8)
MOVES = [(0, 1), (1, 2), (2, 1), (1, 2), (2, 1), (1, 2)]  # the prod alias of each prompt, in order

# Commits a prompt every 10 ms from its first ("started") until it has made `OUTSIDE` and one more after it saw
# the stop file (which the test makes after the API writers' last call).
OTHER_PROCESS = textwrap.dedent("""
    import os, sys, time
    from bank import catalog
    from bank.db import make_engine, make_sessionmaker
    from promptbank_domain.task import TaskSpec
    sessions = make_sessionmaker(make_engine(sys.argv[1]))
    i, last = 0, False
    while not last:
        last = i + 1 >= int(sys.argv[2]) and os.path.exists(sys.argv[3])
        with sessions() as s:
            catalog.create_prompt(s, f"outside-{i}", TaskSpec(labels=("a", "b")), tags=["outside"])
            s.commit()
        if i == 0:
            print("started", flush=True)
        i += 1
        time.sleep(0.01)
    print(f"done {i}")
""")


def write_times(db: str) -> tuple[list[datetime], list[datetime]]:
    """When each write was committed, as the bank stamped it: the other process's prompts, and the rows the
    server wrote for the API writers (their prompts, jobs, job events, versions and alias moves), each sorted."""
    engine = make_engine(db)
    try:
        with make_sessionmaker(engine)() as s:
            outside = list(s.scalars(select(Prompt.created_at).where(Prompt.name.like("outside-%"))))
            api = [*s.scalars(select(Prompt.created_at).where(Prompt.name.like("w%"))),
                   *s.scalars(select(Job.created_at)), *s.scalars(select(JobEvent.at)),
                   *s.scalars(select(PromptVersion.created_at)), *s.scalars(select(AliasEvent.at))]
    finally:
        engine.dispose()
    return sorted(outside), sorted(api)


def test_sixteen_writers_and_another_process_lose_nothing(ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    db = str(tmp_path / "bank.db")
    live = LiveServer(ServerConfig(port=0, db=db, grace_seconds=1.0, worker_cpus=0.25,
                                   backbones=(BackboneSpec("enc", tiny_encoder),)))
    stop = tmp_path / "stop"
    other = subprocess.Popen([sys.executable, "-c", OTHER_PROCESS, db, str(OUTSIDE), str(stop)], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def writer(i: int) -> str:
        with Client(live.address, timeout=120) as c:
            c.create_prompt(f"w{i}", ["negative", "positive"], tags=["start"])
            for k in range(5):
                c.update_prompt(f"w{i}", tags=[f"t{k}"])
            job = c.create_train_job(f"w{i}", "enc", DATA, hyperparameters=HP)
            done = c.wait_job(job.name, timeout=600)
            assert done.state == jp.TrainJob.SUCCEEDED, done.error
            job2 = c.create_train_job(f"w{i}", "enc", DATA, hyperparameters=HP)
            assert c.wait_job(job2.name, timeout=600).state == jp.TrainJob.SUCCEEDED
            for k in range(6):
                c.set_alias(f"w{i}", "prod", 1 + k % 2)
            return job.name

    try:
        assert other.stdout is not None and other.stdout.readline() == "started\n", other.communicate(timeout=60)
        with ThreadPoolExecutor(WRITERS) as ex:
            names = list(ex.map(writer, range(WRITERS)))
        stop.touch()
        out, _ = other.communicate(timeout=300)
        assert other.returncode == 0 and out.startswith("done "), out
        made = int(out.split()[1])
        outside, api = write_times(db)
        assert len(outside) == made >= OUTSIDE, (len(outside), made)
        # both sides wrote at the same time: the other process committed before the server's first write for
        # the API writers and after its last, and kept committing in between
        inside = [t for t in outside if api[0] <= t <= api[-1]]
        span = (api[-1] - api[0]).total_seconds()
        print(f"the other process made {made} commits over {(outside[-1] - outside[0]).total_seconds():.1f} s, "
              f"{len(inside)} of them during the server's {len(api)} writes over {span:.1f} s")
        assert outside[0] < api[0] and api[-1] < outside[-1], (
            f"no overlap: the other process wrote {outside[0]:%T.%f} .. {outside[-1]:%T.%f}, the server "
            f"{api[0]:%T.%f} .. {api[-1]:%T.%f}")
        assert len(inside) >= 10 * span, f"the other process committed {len(inside)} times in {span:.1f} s"
        with Client(live.address, timeout=60) as c:
            assert len(c.list_prompts(tag="outside")) == made
            for i in range(WRITERS):
                p = c.get_prompt(f"w{i}")
                assert list(p.tags) == ["t4"]
                assert [v.name.rsplit("/", 1)[1] for v in c.list_versions(f"w{i}")] in (["1", "2"], ["2", "1"])
                moves = sorted((e.from_version, e.to_version) for e in c.alias_history(f"w{i}") if e.alias == "prod")
                assert moves == sorted(MOVES), moves
            for name in names:
                seqs = [e.sequence for e in c.watch_job(name, timeout=30)]
                assert seqs == list(range(1, len(seqs) + 1))
    finally:
        if other.poll() is None:
            other.kill()
        live.stop()
