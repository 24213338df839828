"""The coordinator pod's scripts (k8s/base/coordinator-scripts.yaml), run for real: the health probe against a
TLS gRPC health service that serves the example overlay's certificate, and the GPU wait on a CPU cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.k8s_manifests import EXAMPLE, containers, one, render, secret_data


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The coordinator pod's scripts, the TLS secret's files and the probe's command, laid out locally."""
    where = tmp_path_factory.mktemp("pod")
    docs = render(EXAMPLE)
    for name, text in one(docs, "ConfigMap", "promptbank-scripts")["data"].items():
        (where / name).write_text(text)
    tls = secret_data(one(docs, "Secret", "promptbank-tls"))
    for name, text in tls.items():
        (where / name).write_text(text)
    (coordinator,) = [c for c in containers(one(docs, "Deployment", "promptbank-coordinator"), init=False)]
    (wait,) = [c for c in containers(one(docs, "Deployment", "promptbank-coordinator")) if c["name"] == "wait-for-gpus"]
    return {"dir": where, "tls": tls, "probe": coordinator["readinessProbe"]["exec"]["command"],
            "wait": wait["command"]}


@pytest.fixture
def server(pod: dict) -> Iterator[tuple[int, health.HealthServicer]]:
    """A gRPC server with the health service only, on TLS with the example certificate and key."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    creds = grpc.ssl_server_credentials([(pod["tls"]["tls.key"].encode(), pod["tls"]["tls.crt"].encode())])
    port = srv.add_secure_port("127.0.0.1:0", creds)
    srv.start()
    try:
        yield port, servicer
    finally:
        srv.stop(None)


def _run(pod: dict, command: list[str], port: int) -> subprocess.CompletedProcess:
    """`command` as the kubelet runs it, with the pod's paths pointed at the local copies."""
    local = [str(pod["dir"] / Path(a).name) if a.startswith("/etc/promptbank/") else a for a in command]
    assert local[0] == "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTBANK_")} | {"PROMPTBANK_PORT": str(port)}
    return subprocess.run([sys.executable, *local[1:]], capture_output=True, text=True, env=env, timeout=60)


def test_the_probe_passes_only_while_the_server_says_serving(pod: dict, server) -> None:
    port, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    ok = _run(pod, pod["probe"], port)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"127.0.0.1:{port}: SERVING"
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # what a graceful shutdown reports first
    draining = _run(pod, pod["probe"], port)
    assert draining.returncode == 1 and "NOT_SERVING" in draining.stdout


def test_the_probe_fails_without_a_server_or_with_a_certificate_for_another_name(pod: dict, server) -> None:
    port, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    wrong_name = _run(pod, [*pod["probe"][:3], "not-the-service"], port)
    assert wrong_name.returncode == 1 and "UNAVAILABLE" in wrong_name.stderr  # the certificate is verified
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    closed = _run(pod, pod["probe"], free)
    assert closed.returncode == 1 and "UNAVAILABLE" in closed.stderr


def test_the_gpu_wait_returns_at_once_when_no_gpu_is_asked_for(pod: dict) -> None:
    """A CPU-only cluster sets the init container's argument to 0. (Waiting for GPUs needs a Ray cluster.)"""
    assert pod["wait"][:2] == ["python", "/etc/promptbank/scripts/wait_for_gpus.py"]
    done = _run(pod, [*pod["wait"][:2], "0"], 50051)
    assert done.returncode == 0, done.stderr
    compile((pod["dir"] / "wait_for_gpus.py").read_text(), "wait_for_gpus.py", "exec")
