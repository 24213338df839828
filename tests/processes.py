"""Real processes for fault tests: a Ray head (`ray start --head --block`) and coordinators
(`python -m coordinator`) that a test can SIGKILL or SIGTERM, each logging to a file it can show on failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from promptbank_api.v1 import jobs_pb2 as jp

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class RayHead:
    """A one-node Ray cluster as its own process tree, so coordinators can join it, die and leave it running."""

    def __init__(self, cpus: int = 8):
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="pbray", dir="/tmp"))  # short: Ray's socket paths are length-capped
        self.log = self.tmp / "head.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={self.port}",
                 f"--num-cpus={cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
                 f"--temp-dir={self.tmp}", "--ray-client-server-port", str(free_port()),
                 "--object-store-memory", str(256 << 20)],
                stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        self.address = f"127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}:\n{_tail(self.log)}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"ray head did not listen on {self.address} in 120 s:\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


class Coordinator:
    """`python -m coordinator` on a port of its own (or a given one, to restart in place)."""

    def __init__(self, db: str, backbones: dict[str, str], log_dir: Path, *, ray_address: str = "",
                 port: int | None = None, lease_s: float = 5.0, grace_s: float = 10.0,
                 env: dict[str, str] | None = None, extra: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = log_dir / f"coordinator-{self.port}-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "coordinator", "--port", str(self.port), "--db", db,
               "--job-lease", str(lease_s), "--grace", str(grace_s), *extra]
        for name, path in backbones.items():
            cmd += ["--backbone", f"{name}={path}"]
        if ray_address:
            cmd += ["--ray-address", ray_address]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**ENV, **(env or {})})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 240) -> Coordinator:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"coordinator exited {self.proc.returncode}:\n{self.tail()}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                        return self
                except grpc.RpcError:
                    pass
                time.sleep(0.5)
        raise RuntimeError(f"coordinator on {self.address} not SERVING in {timeout:.0f} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or handed back."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 120) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def tail(self, n: int = 60) -> str:
        return _tail(self.log, n)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def owner_pid(job: jp.TrainJob) -> int:
    """The process id in a job's lease owner (host:pid:random)."""
    return int(job.lease_owner.split(":")[1])
