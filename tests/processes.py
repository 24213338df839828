"""Real processes for fault tests: a Ray head (`ray start --head --block`) and coordinators
(`python -m coordinator`) that a test can SIGKILL or SIGTERM, each logging to a file it can show on failure."""

from __future__ import annotations

import json
import os
import shutil
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


def _ray_start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--block",
                                 "--disable-usage-stats", "--object-store-memory", str(256 << 20), *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a test's Ray node, raylet, GCS and workers at once: it holds nothing worth a graceful stop, and
    `ray start --block` takes half a minute to stop on SIGTERM."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


class RayHead:
    """A Ray cluster's head node as its own process tree, so coordinators can join it, die and leave it running.
    `token`: Ray's token auth on (RAY_AUTH_MODE=token), as on a KubeRay cluster; off otherwise."""

    def __init__(self, cpus: int = 8, resources: dict[str, float] | None = None, token: str = ""):
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="pbray", dir="/tmp"))  # short: Ray's socket paths are length-capped
        self.log = self.tmp / "head.log"
        self.env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else ENV
        extra = [f"--resources={json.dumps(resources)}"] if resources else []
        self.proc = _ray_start(["--head", f"--port={self.port}", f"--num-cpus={cpus}", "--num-gpus=0",
                                "--include-dashboard=false", f"--temp-dir={self.tmp}",
                                "--ray-client-server-port", str(free_port()), *extra], self.log, self.env)
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

    def nodes(self) -> list[dict[str, object]]:
        """`ray.nodes()` as a separate driver sees them (this test process may hold its own local Ray)."""
        code = "import json, ray; ray.init(address=%r, log_to_driver=False); print(json.dumps(ray.nodes()))"
        out = subprocess.run([sys.executable, "-c", code % self.address], capture_output=True, text=True,
                             env=self.env, timeout=120, check=True)
        return list(json.loads(out.stdout.strip().splitlines()[-1]))

    def stop(self) -> None:
        _stop_group(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


class RayWorkerNode:
    """A second Ray node joining `head` (`ray start --address`), with its own resources; `kill()` SIGKILLs its
    raylet and every worker process on it at once, as a lost machine would."""

    def __init__(self, head: RayHead, cpus: int, resources: dict[str, float]):
        self.log = head.tmp / f"node-{time.monotonic_ns()}.log"
        self.proc = _ray_start([f"--address={head.address}", f"--num-cpus={cpus}", "--num-gpus=0",
                                f"--resources={json.dumps(resources)}"], self.log, head.env)
        self.resources = resources
        deadline = time.monotonic() + 120
        while not any(n.get("Alive") and all(k in n.get("Resources", {}) for k in resources) for n in head.nodes()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray worker node did not join in 120 s:\n{_tail(self.log)}")
            time.sleep(1)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        _stop_group(self.proc)


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
