"""SQLite under contention: 16 API clients writing at once (creates, tag updates, train jobs and their
events, alias moves) while another process writes to the same file. No "database is locked" reaches anyone,
nothing is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.processes import ENV, ROOT
from tests.test_server import DATA, input_hp

WRITERS = 16
OUTSIDE = 150  # prompts the other process creates, one transaction each
HP = input_hp(num_virtual_tokens=2, epochs=2, batch_size=8)
MOVES = [(0, 1), (1, 2), (2, 1), (1, 2), (2, 1), (1, 2)]  # the prod alias of each prompt, in order

OTHER_PROCESS = textwrap.dedent("""
    import sys
    from bank import catalog
    from bank.db import make_engine, make_sessionmaker
    from promptbank_domain.task import TaskSpec
    sessions = make_sessionmaker(make_engine(sys.argv[1]))
    for i in range(int(sys.argv[2])):
        with sessions() as s:
            catalog.create_prompt(s, f"outside-{i}", TaskSpec(labels=("a", "b")), tags=["outside"])
            s.commit()
    print("done")
""")


def test_sixteen_writers_and_another_process_lose_nothing(ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    db = str(tmp_path / "bank.db")
    live = LiveServer(ServerConfig(port=0, db=db, grace_seconds=1.0, worker_cpus=0.25,
                                   backbones=(BackboneSpec("enc", tiny_encoder),)))
    other = subprocess.Popen([sys.executable, "-c", OTHER_PROCESS, db, str(OUTSIDE)], cwd=ROOT, env=ENV,
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
        with ThreadPoolExecutor(WRITERS) as ex:
            names = list(ex.map(writer, range(WRITERS)))
        out, _ = other.communicate(timeout=300)
        assert other.returncode == 0 and "done" in out, out
        with Client(live.address, timeout=60) as c:
            assert len(c.list_prompts(tag="outside")) == OUTSIDE
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
