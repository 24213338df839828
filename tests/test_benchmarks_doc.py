"""docs/benchmarks.md is rendered from the bench records in bench/results/*.json (bench/render.py), never by hand,
and no record is older than the code it measures.

The first test compares the committed page with what the committed records render; the freshness tests read
git history: each bench names the paths it measures (bench/sources.toml), and a commit after a record's that
touches them fails the suite unless bench/accepted_stale.toml accepts that record, up to a reviewed commit,
with its reason. The others pin the renderer's output on small records written here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import render as bench_render  # noqa: E402
import run_all  # noqa: E402
from _record import BENCHES  # noqa: E402

SOURCES, ACCEPTED = ROOT / "bench" / "sources.toml", ROOT / "bench" / "accepted_stale.toml"
SHALLOW = ("this clone is shallow and lacks it: the check needs the history since the oldest record "
           "(`git fetch --unshallow`, or clone without --depth); nothing was fetched")

RUN_HINT = ("run `.venv/bin/python bench/run_all.py` on an otherwise idle machine: it runs every bench, writes "
            "bench/results/*.json and renders docs/benchmarks.md; commit both")


def test_COMMITTED_docs_benchmarks_md_is_what_the_committed_bench_results_json_render() -> None:
    results = bench_render.RESULTS
    records = [p for p in results.glob("*.json") if p.name != bench_render.MACHINE] if results.is_dir() else []
    assert records, f"no bench records in bench/results/ yet: {RUN_HINT}"
    try:
        expected = bench_render.render(results)
    except bench_render.RenderError as exc:
        pytest.fail(f"bench/results/ does not render: {exc}")
    assert bench_render.DOC.exists(), "docs/benchmarks.md is missing: run `.venv/bin/python bench/run_all.py --render-only`"
    assert bench_render.DOC.read_text() == expected, (
        "docs/benchmarks.md is not what bench/results/*.json render (edited by hand, or the records changed): "
        "run `.venv/bin/python bench/run_all.py --render-only` and commit the page")


# ---- records against the code they measure ----

def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)


def commit_of(repo: Path, ref: str) -> str:
    """The full hash of `ref` if this clone has that commit, else ""."""
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").stdout.strip()


def touching(repo: Path, since: str, paths: list[str]) -> list[str]:
    """`hash subject` of each commit after `since` (not in its history) up to HEAD that changes one of `paths`."""
    return git(repo, "log", "--format=%h %s", f"{since}..HEAD", "--", *paths).stdout.splitlines()


def stale_records(repo: Path, records: dict[str, str], sources: dict[str, list[str]],
                  accepted: list[dict[str, str]]) -> list[str]:
    """One line per record older than a change to its bench's code and not accepted (`records`: bench -> the
    commit it ran at), per accepted entry that no longer holds, and per record this clone cannot check."""
    if git(repo, "rev-parse", "--is-inside-work-tree").returncode != 0:
        return ["not a git checkout: the records' commits cannot be compared with the code's history"]
    shallow = git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    missing = f"; {SHALLOW}" if shallow else ": recorded on a commit that is not in this history"
    problems: list[str] = []
    entries: dict[str, dict[str, str]] = {}
    for e in accepted:
        if set(e) != {"bench", "record", "through", "reason"} or not str(e["reason"]).strip() or e["bench"] in entries:
            problems.append(f"bench/accepted_stale.toml: an entry needs one bench, record, through and a reason: {e}")
        entries[e["bench"]] = e
    for bench, recorded in sorted(records.items()):
        paths, entry = sources.get(bench), entries.pop(bench, None)
        rec = commit_of(repo, recorded)
        if not paths:
            problems.append(f"{bench}: bench/sources.toml names no paths for it")
            continue
        if not rec:
            problems.append(f"{bench}: its record ran at {recorded}{missing}")
            continue
        if git(repo, "merge-base", "--is-ancestor", rec, "HEAD").returncode != 0:
            problems.append(f"{bench}: its record ran at {recorded}, which is not in HEAD's history")
            continue
        newer = touching(repo, rec, paths)
        if entry is None:
            if newer:
                problems.append(f"{bench}: recorded at {recorded}, but {len(newer)} later commits change the code it "
                                f"measures, the latest {newer[0][:90]}: rerun `python bench/run_all.py --only {bench}`, "
                                "or accept the record in bench/accepted_stale.toml with the reason")
            continue
        through = commit_of(repo, entry["through"])
        if commit_of(repo, entry["record"]) != rec or not newer:
            problems.append(f"{bench}: bench/accepted_stale.toml accepts its record at {entry['record']}, but the "
                            f"record ran at {recorded}{'' if newer else ' and nothing later changes its code'}: "
                            "remove the entry")
        elif not through:
            problems.append(f"{bench}: accepted through {entry['through']}{missing}")
        elif (git(repo, "merge-base", "--is-ancestor", rec, through).returncode != 0
              or git(repo, "merge-base", "--is-ancestor", through, "HEAD").returncode != 0):
            problems.append(f"{bench}: accepted through {entry['through']}, which is not between its record and HEAD")
        elif after := touching(repo, through, paths):
            problems.append(f"{bench}: accepted as stale through {entry['through']}, but {len(after)} later commits "
                            f"change the code it measures, the latest {after[0][:90]}: rerun `python bench/run_all.py "
                            f"--only {bench}`, or review them and move `through` in bench/accepted_stale.toml")
    problems += [f"bench/accepted_stale.toml accepts {b}, which has no record: remove the entry" for b in entries]
    return problems


def committed_records() -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["run"]["commit"] for p in sorted(bench_render.RESULTS.glob("*.json"))
            if p.name != bench_render.MACHINE}


def test_every_bench_names_the_code_it_measures() -> None:
    sources = tomllib.loads(SOURCES.read_text())["sources"]
    assert sorted(sources) == sorted(name for name, _, _ in BENCHES), "bench/sources.toml: one entry per bench"
    for bench, paths in sources.items():
        assert f"bench/{bench}.py" in paths, f"{bench}: a bench measures its own script too"
        for p in paths:
            assert (ROOT / p).is_dir() if p.endswith("/") else (ROOT / p).is_file(), f"{bench}: no {p} (folders end in /)"


def test_no_bench_record_is_older_than_the_code_it_measures() -> None:
    problems = stale_records(ROOT, committed_records(), tomllib.loads(SOURCES.read_text())["sources"],
                             tomllib.loads(ACCEPTED.read_text()).get("accepted", []))
    assert not problems, "\n".join(problems)


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def commit(repo: Path, path: str, text: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", f"change {path}"], cwd=repo, check=True, env=env)
    return git(repo, "rev-parse", "--short", "HEAD").stdout.strip()


def test_a_change_to_measured_code_after_a_record_is_caught_until_accepted_or_remeasured(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    sources = {"mixed_batch": ["bench/mixed_batch.py", "workers/"]}
    recorded = commit(repo, "workers/actor.py", "v1")
    assert stale_records(repo, {"mixed_batch": recorded}, sources, []) == []
    commit(repo, "coordinator/server.py", "elsewhere")  # not what the bench measures
    assert stale_records(repo, {"mixed_batch": recorded}, sources, []) == []
    changed = commit(repo, "workers/actor.py", "v2")
    [problem] = stale_records(repo, {"mixed_batch": recorded}, sources, [])
    assert problem.startswith(f"mixed_batch: recorded at {recorded}, but 1 later commits") and "change workers" in problem
    ok = {"bench": "mixed_batch", "record": recorded, "through": changed, "reason": "no forward change"}
    assert stale_records(repo, {"mixed_batch": recorded}, sources, [ok]) == []
    assert stale_records(repo, {"mixed_batch": recorded}, sources, [{**ok, "reason": " "}])  # a reason is required
    again = commit(repo, "bench/mixed_batch.py", "timed differently")
    [problem] = stale_records(repo, {"mixed_batch": recorded}, sources, [ok])
    assert problem.startswith(f"mixed_batch: accepted as stale through {changed}, but 1 later commits")
    [problem] = stale_records(repo, {"mixed_batch": again}, sources, [ok])  # re-measured: the entry goes
    assert "remove the entry" in problem
    assert stale_records(repo, {"mixed_batch": again}, sources, []) == []

    shallow = tmp_path / "shallow"  # CI may clone with --depth 1: the record's commit is then missing
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow)], check=True)
    [problem] = stale_records(shallow, {"mixed_batch": recorded}, sources, [])
    assert problem == f"mixed_batch: its record ran at {recorded}; {SHALLOW}"


# ---- the renderer on records written here ----

MACHINE = {"cpu_model": "Test CPU 9000", "cpu_count": 2, "gpu": None, "torch": "2.0.0", "torch_threads": 2,
           "python": "3.11.0", "platform": "Linux x86_64"}
RUN = {"date": "2025-01-02 03:04 UTC", "commit": "abc1234", "dirty": True, "machine": MACHINE,
       "load_avg_at_start": 0.05, "wall_seconds": 750.0}


def fig(name: str, value: float, unit: str = "", decimals: int = 3, goal: tuple[str, float] | None = None,
        interval: list[float] | None = None, per_seed: list[float] | None = None, signed: bool = False) -> dict[str, Any]:
    return {"name": name, "value": value, "unit": unit, "decimals": decimals, "signed": signed,
            "goal": {"op": goal[0], "value": goal[1]} if goal else None, "met": None,
            "interval": interval, "per_seed": per_seed}


def record(bench: str, figures: list[dict[str, Any]], quick: bool = False, **extra: Any) -> dict[str, Any]:
    return {"schema": 1, "bench": bench, "quick": quick,
            "command": f"python bench/{bench}.py --json bench/results/{bench}.json",
            "settings": {"rows": 64, "tasks": 8}, "run": RUN, "figures": figures, "notes": ["one note"],
            "details": {}, **extra}


def write(folder: Path, *records: dict[str, Any], machine: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        (folder / f"{r['bench']}.json").write_text(json.dumps(r))
    if machine is not None:
        (folder / "machine.json").write_text(json.dumps(machine))
    return folder


MIXED = record("mixed_batch", [
    fig("mixed-task batch", 123.456, "ms", decimals=1),
    fig("mixed/single throughput ratio", 0.981, goal=(">=", 0.97)),
    fig("prompted/bare time ratio", 1.05, goal=("<=", 1.03)),
    fig("speed-up", 1.7, "x", decimals=2, goal=(">=", 1.7)),
])
QUALITY = record("quality", [
    fig("test: prompt accuracy, mean over seeds", 0.885, "accuracy", 4, interval=[0.875, 0.895],
        per_seed=[0.88, 0.89, 0.885]),
    fig("test: gap prompt - fine-tune", -0.005, "accuracy", 4, goal=(">=", -0.01), interval=[-0.015, 0.005],
        per_seed=[-0.01, 0.0, -0.005], signed=True),
    fig("prompt training time, mean over seeds", 480.0, "s", 1, goal=("<", 600)),
])
MACHINE_JSON = {**{k: v for k, v in RUN.items() if k in ("date", "commit", "dirty")}, "machine": MACHINE,
                "postgresql": {"fsync": "on", "server_version": "15.1"}}


def test_render_makes_one_table_per_bench_with_command_date_commit_machine_and_verdicts(tmp_path: Path) -> None:
    text = bench_render.render(write(tmp_path / "r", QUALITY, MIXED, machine=MACHINE_JSON))
    lines = text.splitlines()
    assert lines[0] == "# Benchmarks"
    # run order (bench/_record.BENCHES), not file order
    assert text.index("## mixed_batch: ") < text.index("## quality: ")
    assert "- command: `python bench/mixed_batch.py --json bench/results/mixed_batch.json`" in lines
    assert ("- run: 2025-01-02 03:04 UTC, commit `abc1234` plus uncommitted changes, 12.5 min, "
            "load average 0.05 at start") in lines
    assert ("- machine: Test CPU 9000, 2 CPUs, no GPU; torch 2.0.0 (2 threads); Python 3.11.0; Linux x86_64"
            in lines)
    assert "- settings: rows=64, tasks=8" in lines
    assert "| figure | value | goal | result |" in lines
    assert "| mixed-task batch | 123.5 ms | - | - |" in lines
    assert "| mixed/single throughput ratio | 0.981 | >= 0.97 | met |" in lines
    assert "| prompted/bare time ratio | 1.050 | <= 1.03 | **missed** |" in lines
    assert "| speed-up | 1.70x | >= 1.7x | met |" in lines  # exactly at the goal meets it
    assert "| figure | value | 95% interval | per seed | goal | result |" in lines
    assert ("| test: prompt accuracy, mean over seeds | 0.8850 | [0.8750, 0.8950] | 0.8800 0.8900 0.8850 "
            "| - | - |") in lines
    assert ("| test: gap prompt - fine-tune | -0.0050 | [-0.0150, +0.0050] | -0.0100 +0.0000 -0.0050 | >= -0.01 "
            "| met (interval straddles the goal) |") in lines
    assert "| prompt training time, mean over seeds | 480.0 s | - | - | < 600 s | met |" in lines
    assert "- one note" in lines
    assert "PostgreSQL as the catalog bench ran it: fsync=on, server_version=15.1." in lines
    assert any(line.startswith("Not measured yet: vs_peft, train_speed, e2e, catalog") for line in lines)


def test_render_is_deterministic_and_run_all_render_only_writes_the_same_bytes(tmp_path: Path) -> None:
    a = write(tmp_path / "a", MIXED, QUALITY, machine=MACHINE_JSON)
    b = write(tmp_path / "b", QUALITY, MIXED, machine=MACHINE_JSON)
    assert bench_render.render(a) == bench_render.render(b) == bench_render.render(a)
    doc = tmp_path / "benchmarks.md"
    assert run_all.main(["--render-only", "--results", str(a), "--doc", str(doc)]) == 0
    assert doc.read_text() == bench_render.render(a)
    assert bench_render.main(["--results", str(a), "--doc", str(doc), "--check"]) == 0
    doc.write_text(doc.read_text() + "edited by hand\n")
    assert bench_render.main(["--results", str(a), "--doc", str(doc), "--check"]) == 1


def test_quick_records_render_only_when_allowed_and_then_say_so(tmp_path: Path) -> None:
    folder = write(tmp_path / "q", MIXED, record("vs_peft", [fig("speed-up", 2.0, "x", 2)], quick=True))
    with pytest.raises(bench_render.RenderError, match="vs_peft.*--quick.*--allow-quick"):
        bench_render.render(folder)
    assert run_all.main(["--render-only", "--results", str(folder), "--doc", str(tmp_path / "d.md")]) == 1
    assert not (tmp_path / "d.md").exists()
    text = bench_render.render(folder, allow_quick=True)
    section = text[text.index("## vs_peft"):]
    assert section.splitlines()[2] == "**QUICK pipeline check (tiny sizes): these numbers are not results.**"
    assert "QUICK" not in text[text.index("## mixed_batch"):text.index("## vs_peft")]


def test_render_without_records_says_to_run_run_all(tmp_path: Path) -> None:
    with pytest.raises(bench_render.RenderError, match="run_all"):
        bench_render.render(tmp_path)
    (tmp_path / "mixed_batch.json").write_text(json.dumps({"schema": 1, "bench": "other"}))
    with pytest.raises(bench_render.RenderError, match="schema-1 bench record"):
        bench_render.render(tmp_path)


def test_a_record_written_by_the_bench_helper_renders(tmp_path: Path) -> None:
    from _record import Record

    rec = Record("mixed_batch", {"rows": 8, "json": "x", "quick": False}, quick=False, argv=["--rows", "8"])
    rec.figure("mixed/single throughput ratio", 0.5, goal=">= 0.97")
    rec.figure("gap", -0.02, "accuracy", decimals=4, signed=True, goal=">= -0.01", interval=(-0.03, -0.015),
               per_seed=[-0.03, -0.01])
    rec.write(str(tmp_path / "mixed_batch.json"))
    data = json.loads((tmp_path / "mixed_batch.json").read_text())
    assert data["command"] == "python bench/mixed_batch.py --rows 8" and data["settings"] == {"rows": 8}
    assert [f["met"] for f in data["figures"]] == [False, False]
    assert {"date", "commit", "dirty", "machine", "load_avg_at_start"} <= set(data["run"])
    text = bench_render.render(tmp_path)
    assert "| mixed/single throughput ratio | 0.500 | - | - | >= 0.97 | **missed** |" in text
    assert "| gap | -0.0200 | [-0.0300, -0.0150] | -0.0300 -0.0100 | >= -0.01 | **missed** |" in text
