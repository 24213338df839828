"""Render docs/benchmarks.md from the bench records in bench/results/*.json (deterministic: same JSON, same bytes).

    python bench/render.py [--results bench/results] [--doc docs/benchmarks.md] [--allow-quick] [--check]

One table per bench (figure, value, goal, met/missed; a 95% interval column where the bench has one), under a
header naming the exact command, the date, the commit and the machine from that bench's record. Records of a
`--quick` run are refused unless `--allow-quick` (they check the pipeline; they are not results). `--check`
writes nothing and exits 1 when the doc differs from what the records render. `python bench/run_all.py
--render-only` does the same as a plain run of this script.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import BENCHES, ROOT, SCHEMA, goal_met  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
MACHINE = "machine.json"
TITLES = {name: what for name, what, _ in BENCHES}


class RenderError(Exception):
    """The records cannot be rendered (none, malformed, or quick ones without --allow-quick)."""


def load(results: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(machine.json or None, the bench records in run order; unknown benches after, by name)."""
    if not results.is_dir():
        raise RenderError(f"no {results}: run `python bench/run_all.py` first")
    records = []
    for path in sorted(results.glob("*.json")):
        if path.name == MACHINE:
            continue
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RenderError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(rec, dict) or rec.get("schema") != SCHEMA or rec.get("bench") != path.stem:
            raise RenderError(f"{path}: not a schema-{SCHEMA} bench record named {path.stem!r}")
        records.append(rec)
    if not records:
        raise RenderError(f"no bench records in {results}: run `python bench/run_all.py` (it writes them)")
    order = {name: i for i, (name, _, _) in enumerate(BENCHES)}
    records.sort(key=lambda r: (order.get(r["bench"], len(order)), r["bench"]))
    machine_path = results / MACHINE
    machine = json.loads(machine_path.read_text()) if machine_path.exists() else None
    return machine, records


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def unit_suffix(unit: str) -> str:
    if unit in ("", "ratio", "accuracy"):
        return ""
    return unit if unit == "x" else f" {unit}"


def number(value: float, decimals: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:{'+' if signed else ''}.{decimals}f}"


def value_text(f: dict[str, Any]) -> str:
    return number(f["value"], f["decimals"], f.get("signed", False)) + unit_suffix(f["unit"])


def interval_text(f: dict[str, Any]) -> str:
    if not f.get("interval"):
        return "-"
    lo, hi = f["interval"]
    d, s = f["decimals"], f.get("signed", False)
    return f"[{number(lo, d, s)}, {number(hi, d, s)}]"


def per_seed_text(f: dict[str, Any]) -> str:
    if not f.get("per_seed"):
        return "-"
    return " ".join(number(v, f["decimals"], f.get("signed", False)) for v in f["per_seed"])


def goal_text(f: dict[str, Any]) -> str:
    g = f.get("goal")
    return "-" if g is None else f"{g['op']} {g['value']:g}{unit_suffix(f['unit'])}"


def result_text(f: dict[str, Any]) -> str:
    met = goal_met(f["value"], f.get("goal"))
    if met is None:
        return "-" if f.get("goal") is None else "n/a"
    text = "met" if met else "**missed**"
    if f.get("interval"):
        lo, hi = f["interval"]
        if goal_met(lo, f["goal"]) != goal_met(hi, f["goal"]):
            text += " (interval straddles the goal)"
    return text


def machine_text(m: dict[str, Any]) -> str:
    gpu = m.get("gpu") or "no GPU"
    return (f"{m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} CPUs, {gpu}; torch {m.get('torch', '?')} "
            f"({m.get('torch_threads', '?')} threads); Python {m.get('python', '?')}; {m.get('platform', '?')}")


def commit_text(run: dict[str, Any]) -> str:
    return f"`{run.get('commit', 'unknown')}`" + (" plus uncommitted changes" if run.get("dirty") else "")


def settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v}"
                     for k, v in sorted(settings.items()))


def render_bench(rec: dict[str, Any]) -> list[str]:
    run = rec.get("run", {})
    title = TITLES.get(rec["bench"], "")
    out = [f"## {rec['bench']}" + (f": {title}" if title else ""), ""]
    if rec.get("quick"):
        out += ["**QUICK pipeline check (tiny sizes): these numbers are not results.**", ""]
    took = run.get("wall_seconds")
    out += [
        f"- command: `{rec['command']}`",
        f"- run: {run.get('date', '?')}, commit {commit_text(run)}"
        + (f", {took / 60:.1f} min" if took is not None else "")
        + (f", load average {run['load_avg_at_start']:.2f} at start" if "load_avg_at_start" in run else ""),
        f"- machine: {machine_text(run.get('machine', {}))}",
        f"- settings: {cell(settings_text(rec.get('settings', {})))}",
        "",
    ]
    figures = rec.get("figures", [])
    with_interval = any(f.get("interval") for f in figures)
    with_seeds = any(f.get("per_seed") for f in figures)
    head = ["figure", "value", *(["95% interval"] if with_interval else []), *(["per seed"] if with_seeds else []),
            "goal", "result"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in figures:
        row = [cell(f["name"]), value_text(f), *([interval_text(f)] if with_interval else []),
               *([per_seed_text(f)] if with_seeds else []), goal_text(f), result_text(f)]
        out.append("| " + " | ".join(row) + " |")
    notes = rec.get("notes", [])
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    return out + [""]


def render(results: Path = RESULTS, allow_quick: bool = False) -> str:
    machine, records = load(results)
    quick = [r["bench"] for r in records if r.get("quick")]
    if quick and not allow_quick:
        raise RenderError(f"{', '.join(quick)}: records of a --quick run (tiny sizes, not results) in {results}; "
                          "rerun those benches without --quick, or pass --allow-quick for a pipeline check")
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated from bench/results/*.json by `python bench/run_all.py --render-only`; "
        "do not edit by hand. -->",
        "",
        "Every table is one bench's record (`bench/results/<bench>.json`), written by the command in its header; "
        "`python bench/run_all.py` runs every bench one after another, with nothing else running, and renders "
        "this page. A figure's result compares its value with the project's goal for it; where a 95% interval "
        "over training seeds is given and it holds values on both sides of the goal, the result says so. "
        "bench/README.md says what each bench measures and how.",
        "",
    ]
    if machine:
        lines += [f"Machine of the last run ({machine.get('date', '?')}, commit {commit_text(machine)}): "
                  f"{machine_text(machine.get('machine', {}))}."]
        for db in ("postgresql", "sqlite"):
            if machine.get(db):
                lines += ["", f"{'PostgreSQL' if db == 'postgresql' else 'SQLite'} as the catalog bench ran it: "
                          f"{cell(settings_text(machine[db]))}."]
        lines += [""]
    for rec in records:
        lines += render_bench(rec)
    missing = [name for name, _, _ in BENCHES if name not in {r["bench"] for r in records}]
    if missing:
        lines += [f"Not measured yet: {', '.join(missing)} (`python bench/run_all.py --only {' '.join(missing)}`).", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of bench records (default bench/results)")
    ap.add_argument("--doc", type=Path, default=DOC, help="the page to write (default docs/benchmarks.md)")
    ap.add_argument("--allow-quick", action="store_true", help="render records of --quick runs too (marked quick)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when the doc is not what renders")
    a = ap.parse_args(argv)
    try:
        text = render(a.results, a.allow_quick)
    except RenderError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    if a.check:
        same = a.doc.exists() and a.doc.read_text() == text
        print(f"{a.doc}: {'up to date' if same else 'differs from what bench/results renders'}")
        return 0 if same else 1
    a.doc.parent.mkdir(parents=True, exist_ok=True)
    a.doc.write_text(text)
    print(f"rendered {a.doc} from {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
