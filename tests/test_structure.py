"""The package arrows hold: SDK -> gRPC -> coordinator -> workers -> bank, with the API and domain packages shared.

Read from the source (every import, including those inside functions), so a new import that breaks an
arrow fails here instead of in a review.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("promptbank", "promptbank_api", "promptbank_domain", "promptbank_kinds", "coordinator", "workers", "bank")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")) or "migrations" in path.parts:
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return names


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if _top(n) in PACKAGES}


def test_the_source_tree_was_read() -> None:
    assert {"coordinator.scheduler", "workers.protocol", "bank.catalog", "promptbank.client",
            "promptbank_api.errors", "promptbank_domain.jobs"} <= set(MODULES)


@pytest.mark.parametrize("package,allowed", [
    ("promptbank_api", {"promptbank_api"}),  # the contract both sides share imports nothing of ours
    ("promptbank_domain", {"promptbank_domain", "promptbank_api"}),  # the domain types: a leaf under all
    # the kinds: a leaf of torch over the domain; the bank, workers and coordinator use it
    ("promptbank_kinds", {"promptbank_kinds", "promptbank_domain", "promptbank_api"}),
    ("bank", {"bank", "promptbank_domain", "promptbank_kinds", "promptbank_api"}),
    ("workers", {"workers", "bank", "promptbank_domain", "promptbank_kinds", "promptbank_api"}),
    ("coordinator", {"coordinator", "workers", "bank", "promptbank_domain", "promptbank_kinds", "promptbank_api"}),
    ("promptbank", {"promptbank", "promptbank_domain", "promptbank_api"}),  # the SDK reaches the server only over gRPC
])
def test_packages_import_only_down_the_arrows(package: str, allowed: set[str]) -> None:
    bad = {(m, i) for m, names in IMPORTS.items() if _top(m) == package for i in _ours(names)
           if _top(i) not in allowed}
    assert not bad, f"{package} imports outside {sorted(allowed)}: {sorted(bad)}"


def test_prompt_kinds_are_a_leaf_of_torch() -> None:
    """promptbank_kinds needs only torch (and safetensors), the domain types and the shared errors, so the bank,
    the workers and the coordinator can all import it; what needs a model's code (transformers) stays in
    workers/."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    third = {(m, i) for m, names in IMPORTS.items() if _top(m) == "promptbank_kinds" for i in names
             if _top(i) not in stdlib | set(PACKAGES) | {"torch", "safetensors"}}
    assert not third, sorted(third)
    ours = {(m, i) for m, names in IMPORTS.items() if _top(m) == "promptbank_kinds" for i in _ours(names)
            if _top(i) not in ("promptbank_kinds", "promptbank_domain") and i != "promptbank_api.errors"}
    assert not ours, sorted(ours)
    assert {"promptbank_kinds.input", "promptbank_kinds.deep"} <= set(MODULES)


def test_the_domain_package_needs_only_the_standard_library() -> None:
    """Domain types load anywhere (the CLI, a worker, a notebook): no third-party import, not even in a function,
    so none of the kinds (torch): they describe themselves to the domain (promptbank_domain.kinds), and the arrow
    rule above keeps the domain off every other package of ours."""
    import sys

    ours = set(PACKAGES)
    bad = {(m, i) for m, names in IMPORTS.items() if _top(m) == "promptbank_domain" for i in names
           if _top(i) not in ours and _top(i) not in sys.stdlib_module_names}
    assert not bad, sorted(bad)


def test_no_orm_outside_the_bank() -> None:
    """SQLAlchemy, the ORM models and the session type stay in bank/: every other package gets domain types
    and read models, and hands bank functions the opaque `Tx` that `BankDB.run`/`read` gave it."""
    bad = {(m, i) for m, names in IMPORTS.items() if _top(m) != "bank" for i in names
           if _top(i) == "sqlalchemy" or i == "bank.models" or i.startswith("bank.models.")}
    assert not bad, sorted(bad)
    for m, path in MODULES.items():
        if _top(m) != "bank":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bank"):
                    assert "Session" not in {a.name for a in node.names}, f"{m} imports Session from {node.module}"


def test_bank_functions_return_no_orm_rows() -> None:
    """What a public bank function returns is a read model, a domain type or a plain value: its return
    annotation names no ORM class (rows stay behind the `_row` helpers)."""
    import bank.models

    orm = {name for name, obj in vars(bank.models).items() if isinstance(obj, type) and issubclass(obj, bank.models.Base)}
    bad = []
    for m, path in MODULES.items():
        if _top(m) != "bank" or m in ("bank.models", "bank.reads"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and node.returns is not None:
                names = {n.id for n in ast.walk(node.returns) if isinstance(n, ast.Name)}
                if names & orm:
                    bad.append(f"{m}.{node.name}")
    assert not bad, bad


def test_workers_use_only_the_codec_of_the_bank() -> None:
    """Workers are pure compute: they never open the database."""
    bad = {(m, i) for m, names in IMPORTS.items() if _top(m) == "workers" for i in names
           if _top(i) == "bank" and i != "bank.codec"}
    assert not bad, sorted(bad)


def test_the_coordinator_writes_no_sql() -> None:
    """All SQL lives in bank/: the coordinator calls its functions and imports no SQLAlchemy."""
    bad = {(m, i) for m, names in IMPORTS.items() if _top(m) == "coordinator" for i in names
           if _top(i) == "sqlalchemy"}
    assert not bad, sorted(bad)
    source = {m: MODULES[m].read_text() for m in MODULES if _top(m) == "coordinator"}
    for m, text in source.items():
        for needle in (".query(", "select(", "s.add(", "s.delete(", "s.flush(", "s.execute("):
            assert needle not in text, f"{m} runs SQL itself ({needle!r}); move it into bank/"


def test_no_service_imports_another_service() -> None:
    services = {m for m in MODULES if m.endswith("_service")}
    bad = {(m, i) for m in services for i in IMPORTS[m] if i in services and i != m}
    assert not bad, sorted(bad)


def test_no_import_cycles() -> None:
    graph = {m: {i for i in _ours(IMPORTS[m]) if i in MODULES and i != m} for m in MODULES}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n] if n in stack else [m, n]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_server_starts_without_loading_the_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys, coordinator.server, coordinator.__main__; "
            "print(sorted(m for m in sys.modules if m == 'promptbank' or m.startswith('promptbank.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_limit_has_a_flag_and_a_documented_row() -> None:
    """The limits table, the serve flags and docs/configuration.md name the same limits."""
    from coordinator.__main__ import parse
    from coordinator.limits import FLAGS, LIMIT_HELP, Limits

    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert set(FLAGS.values()) == set(LIMIT_HELP) and FLAGS
    cfg = parse(["--port", "0", "--backbone", "x=/nonexistent", *[a for flag in FLAGS for a in (flag, "7")]])
    assert cfg.limits == Limits(**dict.fromkeys(FLAGS.values(), 7))  # each flag reaches its row
    for flag, name in FLAGS.items():
        default = getattr(Limits(), name)
        assert f"| `{flag}` | {default:,}" in doc, f"docs/configuration.md lacks the row for {flag} ({default:,})"


ACTOR_CALLS = {"kill", "remote", "get", "wait", "cancel", "get_actor"}  # ray.<these>: calls on actors and their results


def test_every_actor_call_is_in_the_worker_client() -> None:
    """coordinator/worker_client.py makes every Ray call to a replica, typed by the worker contract; no other
    coordinator module calls `.remote(` or `ray.kill`/`ray.get`/... itself."""
    found: dict[str, list[str]] = {}
    for m, path in MODULES.items():
        if _top(m) != "coordinator":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            f = node.func if isinstance(node, ast.Call) else None
            if isinstance(f, ast.Attribute) and (f.attr == "remote" or (
                    f.attr in ACTOR_CALLS and isinstance(f.value, ast.Name) and f.value.id == "ray")):
                found.setdefault(m, []).append(f"{ast.unparse(f)} (line {node.lineno})")
    assert "coordinator.worker_client" in found, "the check reads no actor call at all"
    bad = {m: calls for m, calls in found.items() if m != "coordinator.worker_client"}
    assert not bad, f"Ray actor calls outside coordinator/worker_client.py: {bad}"


def test_the_test_command_type_checks_every_package_strictly() -> None:
    """scripts/test.sh (the README's test command; .ci/run calls it) runs mypy right after ruff and before the
    tests, under `set -e` so a type error ends the run, over [tool.mypy]'s packages: all of ours, strict, none
    let off its errors."""
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "scripts/test.sh").read_text().splitlines()]
    lines = [line for line in lines if line]
    assert "set -euo pipefail" in lines
    ruff = next(i for i, line in enumerate(lines) if line.startswith('"$PY" -m ruff check'))
    pytest_run = next(i for i, line in enumerate(lines) if line.startswith('"$PY" -m pytest'))
    assert re.fullmatch(r'"\$PY" -m mypy', lines[ruff + 1]), f"no bare mypy run after ruff: {lines[ruff + 1]!r}"
    assert ruff + 1 < pytest_run
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert set(mypy["packages"]) == set(PACKAGES)
    assert mypy["strict"] is True and mypy["python_version"] == "3.11"
    for override in mypy.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        assert not override.get("ignore_errors") and override.get("follow_imports") not in ("skip", "silent"), modules
        if override.get("ignore_missing_imports"):  # only for libraries without types, never for ours
            assert not {m.split(".")[0] for m in modules} & set(PACKAGES), modules
