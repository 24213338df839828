"""Accept bench records as stale after reviewing what changed since: one command instead of hand-editing TOML.

    python bench/accept_stale.py --reason "what the reviewed commits change, and why the figures stand"
        [--through REF] [--only NAME ...] [--dry-run]

For every record (bench/results/<bench>.json) that a commit after it (or after its entry's `through`) changes the
code of (bench/sources.toml), it prints those commits, then writes bench/accepted_stale.toml: a new entry, or the
existing one's `through` moved to REF (default HEAD) with "Reviewed through REF (date): REASON" appended.
tests/test_benchmarks_doc.py checks the result. Re-measuring (bench/run_all.py --only NAME) is the fix; this is
for commits that do not change what a record measures, and its reason says so.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES, ACCEPTED, RESULTS = ROOT / "bench" / "sources.toml", ROOT / "bench" / "accepted_stale.toml", ROOT / "bench" / "results"
WIDTH = 112  # the file's line width


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def records() -> dict[str, str]:
    """bench -> the commit its record ran at."""
    return {p.stem: json.loads(p.read_text())["run"]["commit"] for p in sorted(RESULTS.glob("*.json"))
            if p.name != "machine.json"}


def entry_block(bench: str, text: str) -> re.Match[str] | None:
    return re.search(rf'(?ms)^\[\[accepted\]\]\nbench = "{re.escape(bench)}"\n.*?"""\n', text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reason", required=True, help="what the reviewed commits change and why the figures stand")
    ap.add_argument("--through", default="HEAD", help="the last commit reviewed (default HEAD)")
    ap.add_argument("--only", nargs="*", default=[], metavar="NAME", help="only these benches")
    ap.add_argument("--dry-run", action="store_true", help="print what would be accepted; write nothing")
    a = ap.parse_args()
    if not a.reason.strip():
        raise SystemExit("--reason is empty: say what the reviewed commits change and why the figures stand")
    through = git("rev-parse", "--short", a.through)
    sources = tomllib.loads(SOURCES.read_text())["sources"]
    text = ACCEPTED.read_text()
    accepted = {e["bench"]: e for e in tomllib.loads(text).get("accepted", [])}
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    note = f"Reviewed through {through} ({day}): {a.reason.strip()}"
    changed = 0
    for bench, recorded in records().items():
        if a.only and bench not in a.only:
            continue
        since = accepted[bench]["through"] if bench in accepted else recorded
        commits = git("log", "--format=%h %s", f"{since}..{through}", "--", *sources.get(bench, [])).splitlines()
        if not commits:
            continue
        changed += 1
        print(f"{bench} (record {recorded}, reviewed through {since}): {len(commits)} commit(s) to review")
        for c in commits:
            print(f"  {c[:WIDTH]}")
        wrapped = "\n".join(textwrap.wrap(note, WIDTH))
        m = entry_block(bench, text)
        if m is None:
            text = text.rstrip("\n") + (f'\n\n[[accepted]]\nbench = "{bench}"\nrecord = "{recorded}"\n'
                                        f'through = "{through}"\nreason = """{wrapped}"""\n')
        else:
            block = re.sub(r'(?m)^through = "[0-9a-f]+"', f'through = "{through}"', m.group(0), count=1)
            block = block[: block.rfind('"""')] + "\n" + wrapped + '"""\n'
            text = text[: m.start()] + block + text[m.end():]
    if not changed:
        print("no record is older than a change to its code past its review")
        return
    if a.dry_run:
        print(f"(dry run: {ACCEPTED.relative_to(ROOT)} not written)")
        return
    tomllib.loads(text)  # still TOML
    ACCEPTED.write_text(text)
    print(f"wrote {ACCEPTED.relative_to(ROOT)}: {changed} record(s) accepted through {through}", file=sys.stderr)


if __name__ == "__main__":
    main()
