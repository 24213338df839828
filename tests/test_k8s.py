"""k8s/ offline: every rendered document against its schema, and the deployment's shape (who selects whom).

The checks against the server's own code (flags, env vars, ports, secret files) are in test_k8s_config.py;
the health probe runs for real in test_k8s_probe.py.
"""

from __future__ import annotations

import copy
import subprocess

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.k8s_manifests import (
    BASE,
    EXAMPLE,
    KUBECTL_VERSION,
    Doc,
    containers,
    find,
    kubectl,
    labels_match,
    one,
    pod_templates,
    raycluster_errors,
    render,
)

# The oldest Kubernetes the manifests are written for (every kind and field is GA there), and the newest
# the schemas know.
K8S_VERSIONS = ("1.30", latest_version())
TREES = {"base": BASE, "example": EXAMPLE}
CRDS = ("ray.io/v1", "monitoring.coreos.com/v1")  # checked against KubeRay's schema / against the Service below


def test_the_manifests_render_with_the_pinned_kubectl_from_the_venv() -> None:
    """Not the machine's kubectl: a fresh machine without one renders the same way, with a known kustomize."""
    done = subprocess.run([kubectl(), "version", "--client"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"Client Version: {KUBECTL_VERSION}" in done.stdout, done.stdout


def core_errors(doc: Doc, version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)  # strict: unknown fields are errors
    except kubernetes_validate.ValidationError as err:
        return f"{doc['kind']}/{doc['metadata']['name']} {'/'.join(map(str, err.path))}: {err.message}"
    return None


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("tree", TREES)
def test_every_core_document_matches_the_kubernetes_schema(tree: str, version: str) -> None:
    docs = [d for d in render(TREES[tree]) if d["apiVersion"] not in CRDS]
    assert len(docs) >= 10, [d["kind"] for d in docs]
    errors = [e for d in docs if (e := core_errors(d, version))]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("tree", TREES)
def test_the_raycluster_matches_kuberays_crd_schema(tree: str) -> None:
    (cluster,) = find(render(TREES[tree]), "RayCluster")
    assert raycluster_errors(cluster) == []


def test_a_misspelt_or_mistyped_field_fails_both_checks() -> None:
    """The validators above are not vacuous: each refuses a wrong field."""
    docs = render(EXAMPLE)
    deployment = one(docs, "Deployment", "promptbank-coordinator")
    deployment["spec"]["replica"] = 2
    assert core_errors(deployment, K8S_VERSIONS[0]) is not None
    cluster = one(docs, "RayCluster", "promptbank-ray")
    typo, wrong_type = copy.deepcopy(cluster), copy.deepcopy(cluster)
    typo["spec"]["headGroupSpec"]["rayStartParam"] = {}
    wrong_type["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "four"
    assert any("rayStartParam" in e for e in raycluster_errors(typo))
    assert any("maxReplicas" in e for e in raycluster_errors(wrong_type))


def test_the_example_renders_every_part_into_its_namespace() -> None:
    docs = render(EXAMPLE)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Namespace", "ConfigMap", "ConfigMap", "Secret", "Secret", "Secret", "Secret",
                            "Service", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy",
                            "NetworkPolicy", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy", "RayCluster",
                            "ServiceMonitor"])
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"promptbank"}
    assert not find(render(BASE), "Secret"), "example secrets belong in the example overlay, never the base"


def test_two_coordinators_roll_and_drain_one_at_a_time() -> None:
    docs = render(EXAMPLE)
    deployment = one(docs, "Deployment", "promptbank-coordinator")
    pdb = one(docs, "PodDisruptionBudget", "promptbank-coordinator")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pdb["spec"]["minAvailable"] == 1
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], labels)
    assert labels_match(deployment["spec"]["selector"]["matchLabels"], labels)


def _pods(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """Each kind of pod with the labels it will carry; KubeRay adds ray.io/* labels to the Ray pods."""
    coordinator = one(docs, "Deployment", "promptbank-coordinator")
    postgres = one(docs, "StatefulSet", "promptbank-postgres")
    cluster = one(docs, "RayCluster", "promptbank-ray")
    name = cluster["metadata"]["name"]
    head, *workers = pod_templates(cluster)
    pods = {"coordinator": coordinator["spec"]["template"]["metadata"]["labels"],
            "postgres": postgres["spec"]["template"]["metadata"]["labels"],
            "ray-head": head["metadata"]["labels"] | {"ray.io/cluster": name, "ray.io/node-type": "head"}}
    for i, worker in enumerate(workers):
        pods[f"ray-worker-{i}"] = worker["metadata"]["labels"] | {"ray.io/cluster": name, "ray.io/node-type": "worker"}
    return pods


def _selected(selector: dict[str, str], pods: dict[str, dict[str, str]]) -> set[str]:
    return {pod for pod, labels in pods.items() if labels_match(selector, labels)}


def test_services_select_exactly_their_pods() -> None:
    docs = render(EXAMPLE)
    pods = _pods(docs)
    assert _selected(one(docs, "Service", "promptbank-coordinator")["spec"]["selector"], pods) == {"coordinator"}
    assert _selected(one(docs, "Service", "promptbank-postgres")["spec"]["selector"], pods) == {"postgres"}


def _allowed_sources(docs: list[Doc], target: str) -> set[str]:
    """Which of our pods the NetworkPolicies let reach `target`; '*' for a rule open to any source."""
    pods = _pods(docs)
    sources: set[str] = set()
    for policy in find(docs, "NetworkPolicy"):
        if target not in _selected(policy["spec"]["podSelector"]["matchLabels"], pods):
            continue
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            if not rule.get("from"):
                sources.add("*")
            for peer in rule.get("from", []):
                if set(peer) == {"namespaceSelector"}:  # another namespace's pods (Prometheus)
                    sources.add("namespace " + peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
                    continue
                assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: only pod or namespace peers"
                sources |= _selected(peer["podSelector"]["matchLabels"], pods)
    return sources


def test_only_the_coordinators_reach_postgres_and_the_ray_head() -> None:
    docs = render(EXAMPLE)
    ray_pods = {p for p in _pods(docs) if p.startswith("ray-")}
    assert _allowed_sources(docs, "postgres") == {"coordinator"}
    assert _allowed_sources(docs, "ray-head") == {"coordinator"} | ray_pods  # Ray's own nodes join the head
    assert _allowed_sources(docs, "ray-worker-0") == ray_pods
    assert _allowed_sources(docs, "coordinator") == {"*", "namespace monitoring"}  # clients (TLS + tokens); Prometheus


def test_the_ray_cluster_has_a_head_and_an_autoscaled_gpu_worker_group() -> None:
    cluster = one(render(EXAMPLE), "RayCluster", "promptbank-ray")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # replicas stay off the head
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["minReplicas"] < group["maxReplicas"], "autoscaling needs room between its bounds"


def test_the_example_pulls_our_images_from_its_registry() -> None:
    docs = render(EXAMPLE)
    images = {c["name"]: c["image"] for d in docs for c in containers(d)}
    assert images.pop("postgres") == "postgres:15"  # the version the test suite runs against
    assert images.pop("ray-worker") == "registry.example.com/promptbank:0.1.0-cuda"
    assert set(images.values()) == {"registry.example.com/promptbank:0.1.0"}, images
    assert set(images) == {"coordinator", "ray-head"}


def test_every_pod_runs_unprivileged() -> None:
    docs = render(EXAMPLE)
    templates = [(d["metadata"]["name"], t) for d in docs for t in pod_templates(d)]
    assert len(templates) == 4  # coordinator, postgres, Ray head, GPU workers
    for name, template in templates:
        ctx = template["spec"]["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, name
    for doc in docs:
        for container in containers(doc):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], container["name"]
