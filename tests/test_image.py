"""The Dockerfile, checked statically (no image is built here): its stages, user, entrypoint, what it copies,
and that its pins agree with pyproject.toml and the RayCluster."""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import tomllib
from dataclasses import dataclass, field

from packaging.requirements import Requirement

from tests.k8s_manifests import BASE, ROOT, one, pod_templates, render


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())  # join continued lines
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def _stages() -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults, and each stage with its steps."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for op, rest in _instructions():
        if op == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip()))
        elif stages:
            stages[-1].steps.append((op, rest))
        elif op == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
    return args, stages


def _args(stage: Stage) -> dict[str, str]:
    return dict(rest.partition("=")[::2] for op, rest in stage.steps if op == "ARG")


def _final() -> Stage:
    return _stages()[1][-1]


def test_a_multi_stage_build_whose_bases_come_from_one_argument() -> None:
    args, stages = _stages()
    assert [s.name for s in stages] == ["uv", "build", "runtime"]
    assert args["BASE_IMAGE"] == "debian:bookworm-slim"
    assert stages[1].base == stages[2].base == "${BASE_IMAGE}"  # a CUDA base swaps both at once
    copied = [rest for op, rest in stages[2].steps if op == "COPY"]
    assert all(c.startswith("--from=build ") for c in copied), "the runtime takes only the build's results"


def test_the_image_runs_as_the_non_root_user_the_pods_expect() -> None:
    users = [rest for op, rest in _final().steps if op == "USER"]
    assert users == ["10001:10001"]
    uid = int(users[0].split(":")[0])
    assert uid != 0
    assert re.search(rf"useradd --uid {uid} ", (ROOT / "Dockerfile").read_text())
    ours = [t for d in render(BASE) for t in pod_templates(d)
            if any(c["image"].startswith("promptbank") for c in t["spec"]["containers"])]
    assert len(ours) == 3  # coordinator, Ray head, GPU workers
    assert {t["spec"]["securityContext"]["runAsUser"] for t in ours} == {uid}


def test_the_entrypoint_is_the_promptbank_console_script() -> None:
    (entry,) = [rest for op, rest in _final().steps if op == "ENTRYPOINT"]
    assert json.loads(entry) == ["promptbank"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["promptbank"].split(":")
    assert callable(getattr(importlib.import_module(module), func))


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(p, pat) for pat in patterns for p in prefixes)


def test_every_copied_path_exists_and_the_packages_are_all_there() -> None:
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert {".git", ".venv", "tests"} <= set(patterns)
    sources = []
    for op, rest in _stages()[1][1].steps:
        if op == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such path"
        assert not _ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", project["project"]["readme"]} | packages == set(sources)


def test_torch_is_the_cpu_build_by_default_and_installed_before_the_project() -> None:
    build = _stages()[1][1]
    args = _args(build)
    pins = {Requirement(r).name: Requirement(r) for r in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert str(pins["torch"].specifier) == f"=={args['TORCH_VERSION']}"
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")
    runs = [rest for op, rest in build.steps if op == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if '--index-url "${TORCH_INDEX_URL}"' in r)
    project_step = next(i for i, r in enumerate(runs) if re.search(r"uv pip install .* \.$", r))
    assert torch_step < project_step


def test_ray_is_pinned_to_the_clusters_version() -> None:
    ray_version = _args(_stages()[1][1])["RAY_VERSION"]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray,) = [Requirement(r) for r in deps if Requirement(r).name == "ray"]
    assert ray.specifier.contains(ray_version)
    assert one(render(BASE), "RayCluster", "promptbank-ray")["spec"]["rayVersion"] == ray_version


def test_the_exposed_port_is_the_servers_default() -> None:
    from coordinator.config import ServerConfig

    assert [rest for op, rest in _final().steps if op == "EXPOSE"] == [str(ServerConfig.port)]
