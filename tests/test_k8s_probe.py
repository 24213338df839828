"""The pod's probes, done as the kubelet does them: Kubernetes' built-in gRPC probe is a plaintext
grpc.health.v1 Check on the container's `health` port. Against a real coordinator that serves TLS on its main
port and the health service alone on --health-port: SERVING while it serves, NOT_SERVING from the first moment
of a graceful shutdown (before the main port closes), and nothing but health on that port."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.config import BackboneSpec, ServerConfig
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import catalog_pb2_grpc as cat_grpc
from tests.conftest import LiveServer
from tests.k8s_manifests import EXAMPLE, containers, one, render, secret_data
from tests.processes import free_port


def kubelet_probe(port: int) -> int:
    """What the kubelet's `grpc: {port}` probe does: Check with service "" over plaintext; the status, -1 if
    the call failed."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return -1


def test_the_kubelets_grpc_probe_follows_the_coordinator_through_a_graceful_stop(
        ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    docs = render(EXAMPLE)
    (coordinator,) = containers(one(docs, "Deployment", "promptbank-coordinator"), init=False)
    assert coordinator["readinessProbe"]["grpc"] == {"port": 8081}  # the manifest's probe is this one
    tls = secret_data(one(docs, "Secret", "promptbank-tls"))
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_text(tls[name])
    health_port = free_port()
    cfg = ServerConfig(port=0, health_port=health_port, db=str(tmp_path / "b.db"), grace_seconds=5.0,
                       tls_cert=str(tmp_path / "tls.crt"), tls_key=str(tmp_path / "tls.key"),
                       backbones=(BackboneSpec("tiny", tiny_encoder),))
    live = LiveServer(cfg)
    stopped = threading.Event()
    try:
        assert live.coord.health_port == health_port
        assert kubelet_probe(health_port) == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:  # health and nothing else there
            try:
                cat_grpc.PromptCatalogStub(ch).ListBackbones(cat.ListBackbonesRequest(), timeout=5)
                raise AssertionError("the health port answered a catalog call")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
        assert kubelet_probe(live.coord.port) == -1  # the main port speaks TLS only

        seen: list[int] = []
        stopper = threading.Thread(target=lambda: (live.stop(), stopped.set()))
        stopper.start()
        while not stopped.is_set():
            seen.append(kubelet_probe(health_port))
            time.sleep(0.05)
        stopper.join(60)
        assert health_pb2.HealthCheckResponse.NOT_SERVING in seen, seen
        first_down = seen.index(health_pb2.HealthCheckResponse.NOT_SERVING)
        assert -1 not in seen[:first_down], "the probe failed before it said NOT_SERVING"
        assert kubelet_probe(health_port) == -1  # gone with the server
    finally:
        if not stopped.is_set():
            live.stop()
