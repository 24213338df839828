"""Run every bench, one after another, and render docs/benchmarks.md from their records.

    python bench/run_all.py [--only NAME ...] [--skip NAME ...] [--seeds 3] [--quick] [--list] [--render-only]

Each bench runs as its own subprocess (nothing else in parallel: run it on a quiet machine) with
`--json bench/results/<bench>.json`; then bench/results/machine.json (date, commit and dirty flag, CPU,
torch and its threads, GPU, Python, and the database settings the catalog bench ran with) is written and
docs/benchmarks.md rendered from bench/results/ (bench/render.py). A bench that fails keeps its previous
record, is named at the end, and the exit status is 1.

`--quick` runs every bench at tiny sizes as a pipeline check: its records are marked quick, go to a temporary
folder (not bench/results/) and render next to them, never into docs/benchmarks.md unless `--allow-quick`.
`--list` prints what would run, with estimated minutes on 2 CPU cores, and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import BENCHES, ROOT, quality_minutes, run_info  # noqa: E402
from render import DOC, MACHINE, RESULTS, RenderError, render  # noqa: E402

NAMES = [name for name, _, _ in BENCHES]
NEEDS_GPU = {"device"}  # measured only on a machine with a CUDA GPU (scripts/device_check.sh runs it there)
QUICK_RESULTS = Path(tempfile.gettempdir()) / "promptbank-bench-quick"


def shown(path: Path) -> str:
    """A path as the commands show it: relative to the repository root when under it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def command(name: str, a: argparse.Namespace, results: Path) -> list[str]:
    extra = ["--seeds", str(a.seeds)] if name == "quality" and a.seeds is not None else []
    return [sys.executable, f"bench/{name}.py", *(["--quick"] if a.quick else []), *extra,
            "--json", shown(results / f"{name}.json")]


def minutes(name: str, a: argparse.Namespace) -> float:
    if name == "quality":
        return quality_minutes(a.seeds or 3)
    return dict((n, m) for n, _, m in BENCHES)[name]


def write_machine(results: Path, ran: list[str], quick: bool) -> None:
    info = run_info()
    info.update(benches=ran, quick=quick)
    catalog = results / "catalog.json"
    if catalog.exists():  # the server settings the catalog bench ran with
        details = json.loads(catalog.read_text()).get("details", {})
        for db in ("postgresql", "sqlite"):
            if db in details:
                info[db] = details[db]
    (results / MACHINE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def run_one(name: str, a: argparse.Namespace, results: Path) -> bool:
    cmd = command(name, a, results)
    out = results / f"{name}.json"
    backup = out.with_suffix(".json.prev")
    if out.exists():
        out.replace(backup)
    print(f"\n=== {name}: {shlex.join(['python', *cmd[1:]])}  (about {minutes(name, a):g} min on 2 cores"
          f"{', quick: a minute or two' if a.quick else ''}; load average now {os.getloadavg()[0]:.2f})", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    t = time.perf_counter()
    try:
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    except KeyboardInterrupt:
        if backup.exists():
            backup.replace(out)  # interrupted: the previous record stays
        raise
    wall = time.perf_counter() - t
    if rc != 0 or not out.exists():
        print(f"=== {name} FAILED (exit {rc}) after {wall / 60:.1f} min"
              + ("; its previous record is kept" if backup.exists() else ""), flush=True)
        if backup.exists():
            backup.replace(out)
        return False
    record = json.loads(out.read_text())
    record["run"]["wall_seconds"] = round(wall, 1)
    out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    backup.unlink(missing_ok=True)
    print(f"=== {name} done in {wall / 60:.1f} min", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"run only these ({', '.join(NAMES)})")
    ap.add_argument("--skip", nargs="+", choices=NAMES, metavar="NAME", default=[], help="run all but these")
    ap.add_argument("--seeds", type=int, default=None, help="training seeds for bench/quality.py (its default: 3)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, records to a temporary folder (pipeline check)")
    ap.add_argument("--list", action="store_true", help="print what would run and the estimated minutes; run nothing")
    ap.add_argument("--render-only", action="store_true", help="render docs/benchmarks.md from the records; run nothing")
    ap.add_argument("--allow-quick", action="store_true", help="let quick records render into --doc")
    ap.add_argument("--results", type=Path, default=None,
                    help=f"records folder (default bench/results; with --quick {QUICK_RESULTS})")
    ap.add_argument("--doc", type=Path, default=None,
                    help="page to render (default docs/benchmarks.md; with --quick benchmarks.md in the records folder)")
    a = ap.parse_args(argv)

    results = a.results or (QUICK_RESULTS if a.quick else RESULTS)
    doc = a.doc or (results / "benchmarks.md" if a.quick else DOC)
    selected = [n for n in NAMES if (not a.only or n in a.only) and n not in a.skip]  # always in run order
    if a.quick and not a.allow_quick and (results.resolve() == RESULTS.resolve() or doc.resolve() == DOC.resolve()):
        ap.error("--quick records must not land in bench/results or docs/benchmarks.md (add --allow-quick to insist)")

    if a.list:
        total = 0.0
        for name in selected:
            total += minutes(name, a)
            print(f"{name:<12} ~{minutes(name, a):>4g} min  {shlex.join(['python', *command(name, a, results)[1:]])}")
        print(f"{'total':<12} ~{total:>4g} min on 2 CPU cores{' (quick: a few minutes)' if a.quick else ''}; "
              f"then {shown(results / MACHINE)} and {shown(doc)}")
        return 0

    failed: list[str] = []
    skipped: list[str] = []
    if not a.render_only:
        results.mkdir(parents=True, exist_ok=True)
        total = sum(minutes(n, a) for n in selected)
        print(f"running {', '.join(selected)} one after another: about {total:g} min on 2 CPU cores"
              f"{' (quick: a few minutes)' if a.quick else ''}; keep the machine otherwise idle", flush=True)
        for name in selected:
            if name in NEEDS_GPU and not a.quick and not shutil.which("nvidia-smi"):
                print(f"\n=== {name}: skipped, this machine has no CUDA GPU (scripts/device_check.sh on one)", flush=True)
                skipped.append(name)
                continue
            if not run_one(name, a, results):
                failed.append(name)
        write_machine(results, [n for n in selected if n not in failed and n not in skipped], a.quick)
    try:
        text = render(results, allow_quick=a.quick or a.allow_quick)
    except RenderError as exc:
        print(f"not rendered: {exc}", file=sys.stderr)
        return 1
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    print(f"rendered {shown(doc)} from {shown(results)}")
    if failed:
        print(f"FAILED: {', '.join(failed)} (rerun: python bench/run_all.py --only {' '.join(failed)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
