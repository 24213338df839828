"""Process lifecycle: `promptbank serve` as a real process, graceful stop, restart picks up jobs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.test_server import DATA, input_hp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_answers_and_stops_gracefully(tiny_encoder: str, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptbank.cli", "serve", "--port", str(port), "--db", str(tmp_path / "b.db"),
         "--backbone", f"tiny={tiny_encoder}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAY_ADDRESS": ""},
    )
    try:
        with Client(f"127.0.0.1:{port}", timeout=30) as c:
            c.wait_ready(timeout=180)
            assert [b.name for b in c.list_backbones()] == ["backbones/tiny"]
            assert c.list_backbones()[0].fingerprint
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert f"serving on 127.0.0.1:{port}" in out
        assert (tmp_path / "b.db").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_stopped_coordinator_hands_its_jobs_to_the_next(ray_session: None, tiny_encoder: str,
                                                                   tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, db=str(tmp_path / "b.db"), grace_seconds=0.5,
                       backbones=(BackboneSpec("tiny-enc", tiny_encoder),))
    first = LiveServer(cfg)
    hp = input_hp(num_virtual_tokens=2, epochs=40, batch_size=8, patience=10000)
    with Client(first.address) as c:
        job = c.create_train_job("restart", "tiny-enc", DATA, hyperparameters=hp)
        for ev in c.watch_job(job.name, timeout=120):
            if ev.kind == jp.TrainJobEvent.PROGRESS:
                break
    first.stop()  # graceful: the job checkpoints and goes back to the queue; its actor is gone

    second = LiveServer(cfg)
    try:
        with Client(second.address) as c:
            done = c.wait_job(job.name, timeout=300)
            assert done.state == jp.TrainJob.SUCCEEDED, done.error
            assert done.result_version == "prompts/restart/versions/1"
            messages = [e.message for e in c.watch_job(job.name, timeout=30)]
            handed = [m for m in messages if m.startswith("requeued at coordinator shutdown; will resume from step")]
            assert len(handed) == 1, messages
            assert done.attempts == 1  # a graceful hand-back costs no attempt
            assert c.classify([("restart", "good")])[0].version == done.result_version
    finally:
        second.stop()
