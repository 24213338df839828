"""Every bench script imports and parses its flags, run_all runs every bench, and a bench's record renders
(the benches are run by hand; this keeps them from rotting)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))
TOOLS = {"run_all.py", "render.py", "accept_stale.py"}  # run the benches / render their records; not benches themselves
BENCHES = sorted(s.removesuffix(".py") for s in SCRIPTS if s not in TOOLS)
ENV_PATH = {"PYTHONPATH": str(ROOT)}


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV_PATH, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_help(script: str) -> None:
    out = run(str(BENCH / script), "--help")
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
    if script not in TOOLS:  # every bench writes its record and has a seconds-long pipeline check
        assert "--json PATH" in out.stdout and "--quick" in out.stdout, f"bench/{script} lacks --json PATH or --quick"


def test_run_all_would_run_every_bench_in_the_bench_folder() -> None:
    out = run(str(BENCH / "run_all.py"), "--list")
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines() if line and not line.startswith("total")]
    assert sorted(listed) == BENCHES, f"run_all lists {listed}; bench/ has {BENCHES}: add the bench to _record.BENCHES"
    for bench in BENCHES:
        assert f"python bench/{bench}.py --json bench/results/{bench}.json" in out.stdout


def test_run_all_quick_list_names_the_quick_flag_and_a_folder_outside_the_repo() -> None:
    out = run(str(BENCH / "run_all.py"), "--list", "--quick", "--seeds", "4")
    assert out.returncode == 0, out.stderr
    assert "python bench/quality.py --quick --seeds 4 --json" in out.stdout
    assert "bench/results/" not in out.stdout


def test_run_all_refuses_quick_records_in_bench_results() -> None:
    out = run(str(BENCH / "run_all.py"), "--quick", "--results", "bench/results", "--only", "catalog")
    assert out.returncode == 2 and "must not land in bench/results" in out.stderr


def test_a_quick_catalog_run_writes_a_record_that_renders(tmp_path: Path) -> None:
    """The whole pipeline on the one bench that needs no model: bench --quick --json, then render."""
    out = run(str(BENCH / "catalog.py"), "--quick", "--backend", "sqlite", "--json", str(tmp_path / "catalog.json"))
    assert out.returncode == 0, out.stderr
    rec = json.loads((tmp_path / "catalog.json").read_text())
    assert rec["quick"] is True and rec["bench"] == "catalog"
    assert rec["details"]["sqlite"]["journal_mode"] == "wal"
    names = [f["name"] for f in rec["figures"]]
    assert "sqlite: resolve+fetch p50" in names and all(f["unit"] for f in rec["figures"])
    refused = run(str(BENCH / "render.py"), "--results", str(tmp_path), "--doc", str(tmp_path / "doc.md"))
    assert refused.returncode == 2 and "--allow-quick" in refused.stderr
    ok = run(str(BENCH / "render.py"), "--results", str(tmp_path), "--doc", str(tmp_path / "doc.md"), "--allow-quick")
    assert ok.returncode == 0, ok.stderr
    doc = (tmp_path / "doc.md").read_text()
    assert "**QUICK pipeline check (tiny sizes): these numbers are not results.**" in doc
    assert "| sqlite: resolve+fetch p50 | " in doc and "| <= 2 ms | " in doc


def test_the_research_gradient_log_runs_and_prints_the_steps_it_saw() -> None:
    """bench/research/grad_norms.py backs a finding in docs/research.md; a few steps keep it from rotting."""
    out = run(str(BENCH / "research" / "grad_norms.py"), "--config", '{"epochs": 1}', "--stop-at", "10", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "over 10 steps" in out.stdout, out.stdout
    step10 = next(line for line in out.stdout.splitlines() if line.startswith("step    10"))
    assert float(step10.split()[5]) > 0, step10  # the gradient norm the optimizer saw


def test_the_commit_comparison_alternates_sides_and_prints_the_median_ratio() -> None:
    """bench/research/ab_commits.py backs "no slower" claims between commits; one checkout on both sides must
    alternate which goes first and give ratios near 1 for a count that does not depend on speed."""
    out = run(str(BENCH / "research" / "ab_commits.py"), "--old", str(ROOT), "--new", str(ROOT), "--bench",
              "mixed_batch", "--figure", "bytes per input-prompt version", "--rounds", "2", "--", "--quick",
              timeout=300)
    assert out.returncode == 0, out.stderr
    assert "round 1 (old first)" in out.stdout and "round 2 (new first)" in out.stdout, out.stdout
    assert "new/old median 1.000 (min 1.000, max 1.000, 2 rounds)" in out.stdout, out.stdout
    bad = run(str(BENCH / "research" / "ab_commits.py"), "--old", str(ROOT), "--new", str(ROOT), "--bench",
              "mixed_batch", "--figure", "no such figure", "--rounds", "1", "--", "--quick", timeout=300)
    assert bad.returncode != 0 and "no figure named 'no such figure'" in bad.stderr, bad.stderr


def test_the_checkpoint_sizes_script_runs_and_prints_each_job(tiny_encoder: str) -> None:
    """bench/research/checkpoint_sizes.py backs the checkpoint table in docs/architecture.md."""
    out = run(str(BENCH / "research" / "checkpoint_sizes.py"), "--model", tiny_encoder, timeout=300)
    assert out.returncode == 0, out.stderr
    sizes = {line[:16].strip(): [int(v.replace(",", "")) for v in line.split()[-3:]]
             for line in out.stdout.splitlines()[1:]}
    assert set(sizes) == {"input", "deep, direct", "deep, projected"}, out.stdout
    first, kept, last = sizes["deep, projected"]
    assert last < first < kept and last < sizes["deep, direct"][1], "a projected run's last checkpoint holds its network"
