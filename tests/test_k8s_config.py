"""k8s/ against the code: the coordinator's flags and environment go through the server's own parser, the
files it reads are keys of the Secrets it mounts, and every port agrees with the one across the wire."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.k8s_manifests import EXAMPLE, ROOT, Doc, containers, find, one, render, secret_data

SERVER_SOURCES = (ROOT / "coordinator" / "__main__.py", ROOT / "coordinator" / "config.py")


def _coordinator(docs: list[Doc]) -> tuple[Doc, Doc]:
    deployment = one(docs, "Deployment", "promptbank-coordinator")
    (container,) = [c for c in containers(deployment, init=False) if c["name"] == "coordinator"]
    return deployment, container


def _volume_files(docs: list[Doc], template: Doc, volume_name: str) -> dict[str, str] | None:
    """The files a Secret or ConfigMap volume shows in the pod (name -> text), as the kubelet lays them."""
    found = [v for v in template["spec"].get("volumes", []) if v["name"] == volume_name]
    assert len(found) == 1, f"volume {volume_name!r} is mounted but not defined once in the pod"
    volume = found[0]
    if "secret" in volume:
        source, data = volume["secret"], secret_data(one(docs, "Secret", volume["secret"]["secretName"]))
    elif "configMap" in volume:
        source, data = volume["configMap"], one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
    else:
        return None  # an emptyDir: nothing to lay out
    if "items" not in source:
        return dict(data)
    missing = [i["key"] for i in source["items"] if i["key"] not in data]
    assert not missing, f"volume {volume_name} names keys its source lacks: {missing}"
    return {i["path"]: data[i["key"]] for i in source["items"]}


def _mounts(docs: list[Doc], template: Doc, container: Doc, where: Path, claims: tuple[str, ...] = ()
            ) -> dict[str, Path]:
    """Write the container's Secret and ConfigMap mounts under `where`; returns mount path -> local folder.
    `claims`: a StatefulSet's volumeClaimTemplates, mounted but not in the pod's volumes."""
    out = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in claims:
            continue
        files = _volume_files(docs, template, mount["name"])
        if files is None:
            continue
        local = where / mount["name"]
        local.mkdir()
        for name, text in files.items():
            (local / name).write_text(text)
        out[mount["mountPath"]] = local
    return out


def _local(path: str, mounts: dict[str, Path]) -> Path:
    for mount_path, local in mounts.items():
        if path.startswith(mount_path.rstrip("/") + "/"):
            return local / path[len(mount_path.rstrip("/")) + 1:]
    raise AssertionError(f"{path} lies on no mounted Secret or ConfigMap")


def _env(docs: list[Doc], container: Doc) -> dict[str, str]:
    env = {}
    for source in container.get("envFrom", []):
        env |= one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    return env | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ServerConfig the example's coordinator pod would run with: its args through `promptbank`'s CLI
    into the server's parser, its environment from the ConfigMap, its files from the Secrets."""
    from coordinator.__main__ import parse
    from promptbank.cli import build_parser

    docs = render(EXAMPLE)
    deployment, container = _coordinator(docs)
    mounts = _mounts(docs, deployment["spec"]["template"], container, tmp_path)
    for name in [n for n in os.environ if n.startswith("PROMPTBANK_")]:
        monkeypatch.delenv(name)
    for name, value in _env(docs, container).items():
        monkeypatch.setenv(name, value)
    cli, rest = build_parser().parse_known_args(container["args"])
    assert cli.cmd == "serve"  # the image's entrypoint is `promptbank`; `serve` runs the coordinator
    parsers: list[argparse.ArgumentParser] = []
    real = argparse.ArgumentParser.parse_args

    def spy(self: argparse.ArgumentParser, *args, **kwargs):  # keep the server's parser to read its flags
        parsers.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", spy)
    local_args = []
    for arg in rest:
        flag, eq, value = arg.partition("=")
        local_args.append(f"{flag}={_local(value, mounts)}" if eq and value.startswith("/") else arg)
    config = parse(local_args)  # an unknown flag or a bad value exits here, as the server would
    return config, parsers[-1], docs, mounts


def test_the_coordinator_flags_give_a_tls_and_token_server_on_the_cluster(served) -> None:
    config, _, docs, _ = served
    postgres = one(docs, "StatefulSet", "promptbank-postgres")
    pg_env = {e["name"]: e.get("value") for e in postgres["spec"]["template"]["spec"]["containers"][0]["env"]}
    cluster = one(docs, "RayCluster", "promptbank-ray")
    secrets = {name: secret_data(one(docs, "Secret", name)) for name in
               ("promptbank-admin-token", "promptbank-db", "promptbank-tls")}

    assert config.host == "0.0.0.0" and not config.insecure  # beyond loopback, so TLS and tokens are required
    assert config.tls and config.auth == "tokens" and not config.tls_client_ca
    assert Path(config.tls_cert).read_text() == secrets["promptbank-tls"]["tls.crt"]
    assert config.admin_token == secrets["promptbank-admin-token"]["token"].strip()
    assert config.db_password == secrets["promptbank-db"]["password"].strip()
    url = make_url(config.db)
    assert url.drivername == "postgresql" and url.password is None  # the password comes from its file
    assert url.host == one(docs, "Service", "promptbank-postgres")["metadata"]["name"]
    assert (url.username, url.database) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
    assert config.ray_address == f"ray://{cluster['metadata']['name']}-head-svc:10001"
    assert [b.replicas for b in config.backbones] == [1] and config.max_replicas == 2  # the overlay's autoscaling
    assert config.job_lease_s == 30


def test_every_file_flag_names_a_key_of_a_mounted_secret(served) -> None:
    _, parser, docs, mounts = served
    _, container = _coordinator(docs)
    file_flags = {o for a in parser._actions if a.metavar == "FILE" for o in a.option_strings}
    given = {arg.partition("=")[0]: arg.partition("=")[2] for arg in container["args"] if arg.startswith("--")}
    used = sorted(set(given) & file_flags)
    assert used == ["--admin-token-file", "--db-password-file", "--tls-cert", "--tls-key"]
    for flag in used:
        assert _local(given[flag], mounts).is_file(), f"{flag} {given[flag]} is no key of its Secret"


def test_postgres_and_the_coordinator_share_one_password(tmp_path: Path) -> None:
    docs = render(EXAMPLE)
    deployment, container = _coordinator(docs)
    postgres = one(docs, "StatefulSet", "promptbank-postgres")
    pg = postgres["spec"]["template"]["spec"]["containers"][0]
    pg_file = {e["name"]: e["value"] for e in pg["env"]}["POSTGRES_PASSWORD_FILE"]
    ours = dict(a.partition("=")[::2] for a in container["args"] if a.startswith("--"))["--db-password-file"]
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()
    claims = tuple(c["metadata"]["name"] for c in postgres["spec"]["volumeClaimTemplates"])
    theirs = _local(pg_file, _mounts(docs, postgres["spec"]["template"], pg, tmp_path / "p", claims))
    mine = _local(ours, _mounts(docs, deployment["spec"]["template"], container, tmp_path / "c"))
    assert theirs.read_text() == mine.read_text() != ""


def _env_names_read_by_the_server() -> set[str]:
    text = "".join(p.read_text() for p in SERVER_SOURCES)
    return set(re.findall(r"os\.environ(?:\.get\(|\[)\"(PROMPTBANK_\w+)\"", text))


def test_every_promptbank_variable_a_manifest_sets_is_one_the_server_reads() -> None:
    read = _env_names_read_by_the_server()
    assert {"PROMPTBANK_HOST", "PROMPTBANK_PORT", "PROMPTBANK_DB", "PROMPTBANK_RAY_ADDRESS"} <= read
    docs = render(EXAMPLE)
    given = {name for d in find(docs, "ConfigMap") for name in d["data"] if name.startswith("PROMPTBANK_")}
    given |= {e["name"] for d in docs for c in containers(d) for e in c.get("env", [])
              if e["name"].startswith("PROMPTBANK_")}
    assert len(given) >= 5
    assert given <= read, f"not read by the server: {sorted(given - read)}"


def _port(container: Doc, name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return port


def test_the_ports_agree_end_to_end() -> None:
    docs = render(EXAMPLE)
    _, coordinator = _coordinator(docs)
    env = _env(docs, coordinator)
    grpc_port = _port(coordinator, "grpc")
    assert int(env["PROMPTBANK_PORT"]) == grpc_port
    service = one(docs, "Service", "promptbank-coordinator")["spec"]["ports"]
    metrics_port = _port(coordinator, "metrics")
    assert int(env["PROMPTBANK_METRICS_PORT"]) == metrics_port
    http_port = _port(coordinator, "https")
    assert int(env["PROMPTBANK_HTTP_PORT"]) == http_port
    assert [(p["port"], p["targetPort"]) for p in service] == [(grpc_port, "grpc"), (http_port, "https"),
                                                               (metrics_port, "metrics")]

    pg = one(docs, "StatefulSet", "promptbank-postgres")["spec"]["template"]["spec"]["containers"][0]
    pg_service = one(docs, "Service", "promptbank-postgres")["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in pg_service] == [(_port(pg, "postgres"), "postgres")]
    assert make_url(env["PROMPTBANK_DB"]).port == _port(pg, "postgres")

    cluster = one(docs, "RayCluster", "promptbank-ray")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert int(env["PROMPTBANK_RAY_ADDRESS"].rsplit(":", 1)[1]) == _port(head, "client")

    policy_ports = {p["metadata"]["name"]: [port["port"] for rule in p["spec"]["ingress"]
                                            for port in rule.get("ports", [])]
                    for p in find(docs, "NetworkPolicy")}
    assert policy_ports["promptbank-coordinator"] == [grpc_port, http_port]
    assert policy_ports["promptbank-coordinator-metrics"] == [metrics_port]
    assert policy_ports["promptbank-postgres"] == [_port(pg, "postgres")]
    assert policy_ports["promptbank-ray-head"] == [_port(head, "client")]


def test_the_probes_are_kubernetes_grpc_probes_on_the_health_only_port(served) -> None:
    config, _, docs, _ = served
    _, container = _coordinator(docs)
    health = _port(container, "health")
    assert config.health_port == health != config.port  # what the server binds, from the ConfigMap
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": health}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > config.placement_timeout_s  # Ray may add a node


def test_the_grace_period_outlasts_the_servers_drain() -> None:
    docs = render(EXAMPLE)
    deployment, container = _coordinator(docs)
    grace = float(dict(a.partition("=")[::2] for a in container["args"] if a.startswith("--"))["--grace"])
    assert grace + 5 <= deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_the_gpu_workers_can_hold_every_replica_the_coordinators_ask_for(served) -> None:
    config, _, docs, _ = served
    deployment, _ = _coordinator(docs)
    cluster = one(docs, "RayCluster", "promptbank-ray")
    gpus_per_pod = [int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
                    for g in cluster["spec"]["workerGroupSpecs"]]
    most = sum(g["maxReplicas"] * n for g, n in zip(cluster["spec"]["workerGroupSpecs"], gpus_per_pod, strict=True))
    # Each coordinator starts its own actors, --worker-gpus each, up to --max-replicas per backbone.
    assert config.worker_gpus == 1
    per_backbone = max(config.max_replicas, *(b.replicas for b in config.backbones))
    wanted = deployment["spec"]["replicas"] * per_backbone * len(config.backbones) * config.worker_gpus
    assert wanted <= most


def test_the_coordinators_hold_the_ray_clusters_token() -> None:
    """Ray 2.60 turns token auth on for `ray start --head`: the RayCluster names the Secret KubeRay hands every
    Ray pod, and the coordinators read the very same Secret and key, in token mode."""
    docs = render(EXAMPLE)
    auth = one(docs, "RayCluster", "promptbank-ray")["spec"]["authOptions"]
    assert auth["mode"] == "token"
    token = secret_data(one(docs, "Secret", auth["secretName"]))["auth_token"].strip()
    assert len(token) >= 32
    _, container = _coordinator(docs)
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (auth["secretName"], "auth_token")


def test_prometheus_scrapes_the_metrics_port_and_grafana_gets_the_dashboard() -> None:
    """The ServiceMonitor (no schema ships offline for its CRD) checked against the manifests it points at."""
    docs = render(EXAMPLE)
    monitor = one(docs, "ServiceMonitor", "promptbank-coordinator")
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    service = one(docs, "Service", "promptbank-coordinator")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [sm for sm in find(docs, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= sm["metadata"]["labels"].items()] == [service]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) == {"port", "path", "interval"} and endpoint["path"] == "/metrics"
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    _, coordinator = _coordinator(docs)
    assert port["targetPort"] == "metrics" and _port(coordinator, "metrics") == port["port"]
    (board,) = [d for d in find(docs, "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    shipped = ROOT / "k8s" / "components" / "prometheus" / "promptbank-dashboard.json"
    assert board["data"] == {"promptbank-dashboard.json": shipped.read_text()}
