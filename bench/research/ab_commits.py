"""One bench figure on two checkouts, in alternating rounds on one machine: is the new commit slower?

    python bench/research/ab_commits.py --old DIR --new DIR --bench e2e --figure NAME [--rounds 3]
        [-- BENCH ARGS ...]

Each checkout runs the bench with its own venv (`DIR/.venv/bin/python bench/<bench>.py --json TMP ...`) from
its own root, so each side measures its own code. Rounds alternate which side goes first (old-new, new-old,
...), so a machine that drifts during the run weighs on both sides. Prints each round's two values and their
ratio new / old, then the median ratio and its spread (min-max over rounds). Writes no record: a comparison
between commits is research, not a published figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def figure(record: Path, name: str) -> float:
    data = json.loads(record.read_text())
    for f in data["figures"]:
        if f["name"] == name:
            return float(f["value"])
    raise SystemExit(f"{record}: no figure named {name!r}; it has {[f['name'] for f in data['figures']]}")


def run(root: Path, bench: str, extra: list[str], name: str) -> float:
    python = root / ".venv/bin/python"
    if not python.exists():
        raise SystemExit(f"{root} has no .venv: run `bash scripts/bootstrap.sh` there first")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        cmd = [str(python), f"bench/{bench}.py", *extra, "--json", str(out)]
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} (in {root}) failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return figure(out, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="checkout of the baseline commit (with its .venv)")
    ap.add_argument("--new", type=Path, required=True, help="checkout of the commit under test (with its .venv)")
    ap.add_argument("--bench", required=True, help="bench/<name>.py to run")
    ap.add_argument("--figure", required=True, help="the record's figure to compare")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the bench, after --")
    a = ap.parse_args()
    extra = [x for x in a.rest if x != "--"]
    ratios = []
    for r in range(a.rounds):
        order = [("old", a.old), ("new", a.new)] if r % 2 == 0 else [("new", a.new), ("old", a.old)]
        got = {side: run(root.resolve(), a.bench, extra, a.figure) for side, root in order}
        ratios.append(got["new"] / got["old"])
        print(f"round {r + 1} ({order[0][0]} first): old {got['old']:.4g}  new {got['new']:.4g}  "
              f"new/old {ratios[-1]:.3f}", flush=True)
    print(f"{a.bench} {a.figure!r}: new/old median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {a.rounds} rounds)")


if __name__ == "__main__":
    sys.exit(main())
