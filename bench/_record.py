"""A bench's machine-readable record (`--json PATH`): exactly the figures it prints, with their units and goals,
the settings it ran with, and when, where and at which commit it ran. `bench/render.py` turns the records in
`bench/results/` into docs/benchmarks.md; `bench/run_all.py` runs every bench and writes them.

Record format (one JSON object per bench):

    {"bench": "mixed_batch", "quick": false, "command": "python bench/mixed_batch.py ...",
     "settings": {...}, "run": {"date": ..., "commit": ..., "dirty": ..., "machine": {...}},
     "figures": [{"name": ..., "value": ..., "unit": ..., "decimals": 3, "goal": {"op": ">=", "value": 0.97},
                  "met": true, "interval": [lo, hi] | null, "per_seed": [...] | null}, ...],
     "notes": ["...", ...], "details": {...}}
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import operator
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = 1

# (name, one line on what it measures, estimated minutes of a full run on 2 CPU cores, quality excluded:
# bench/quality.py prints its own estimate from --seeds). Order = run order = order in docs/benchmarks.md.
BENCHES: list[tuple[str, str, float]] = [
    ("mixed_batch", "mixed-task vs single-task batches; a prompted forward vs the bare backbone", 2),
    ("vs_peft", "a 64-request window over 64 tasks: mixed-task batches vs PEFT set_adapter per task", 2),
    ("train_speed", "a training step vs PEFT prompt tuning (time, memory); co-batched vs sequential jobs", 8),
    ("e2e", "rows/s and latency through gRPC -> coordinator -> Ray actor vs the worker in-process", 4),
    ("catalog", "catalog reads over 100k prompt versions on SQLite and PostgreSQL", 10),
    ("read_path", "Classify latency while a training job writes every step vs with no job", 4),
    ("soak", "10,000 mixed-task Classify requests at concurrency 64: errors, latency, memory growth", 10),
    ("quality", "accuracy on a test split no default was chosen on: input and deep prompts vs probe vs full "
                "fine-tuning, over seeds", 51),
    ("ts_client", "Classify rows/s through the TypeScript SDK vs the Python SDK at the same concurrency", 4),
    ("multinode", "Classify rows/s with replicas spread over two Ray nodes vs on one node (local cluster)", 5),
    ("rest", "a REST/JSON Classify vs a gRPC Classify of the same rows, side by side on one server", 5),
    ("load_memory", "peak RSS of a replica loading a GPT-2-small-shaped model in bf16, over its bf16 weight bytes",
     2),
    ("device", "on a CUDA GPU, in process, a 1B causal LM in bf16: mixed/single batches, vs PEFT over 64 tasks, "
               "co-batched training, continuous batching (scripts/device_check.sh)", 5),
    ("generate", "64 concurrent generations over 16 tasks (deep and input prompts): continuous batching vs one "
                 "sequence at a time, PEFT per task and one batched HF generate with no prompt", 12),
    ("live_eval", "Classify throughput with a shadow version on every row vs none, in alternating rounds on one "
                  "coordinator, against the forward's own ceiling; outcomes recorded per second", 4),
]

# bench/quality.py's cost on 2 CPU cores at its default sizes (3000 training rows): one prompt training run (the
# product defaults) and one fine-tuning run; the probe, zero-shot and embeddings take a few minutes together.
# Measured on 2 AMD EPYC cores without bf16 units (training in fp32; 2026-12-01): a 2-core machine with bf16
# units took about 8 and 4 minutes.
QUALITY_MIN_PROMPT, QUALITY_MIN_FINETUNE, QUALITY_MIN_REST = 21.0, 8.0, 3.0
QUALITY_FT_GRID = 3  # fine-tuning learning rates tried on the development split


def quality_minutes(seeds: int, ft_grid: int = QUALITY_FT_GRID, train_rows: int = 3000) -> float:
    """Expected minutes of a full quality run on 2 CPU cores: the input and the deep prompt and fine-tuning per
    training seed on the test split, plus the fine-tuning grid on the development split."""
    scale = train_rows / 3000
    return round(scale * (2 * seeds * QUALITY_MIN_PROMPT + (ft_grid + seeds) * QUALITY_MIN_FINETUNE) + QUALITY_MIN_REST)


GOAL_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}
EPS = 1e-12  # a value printed as exactly the goal meets it


def goal_met(value: float, goal: dict[str, Any] | None) -> bool | None:
    """True/False against the goal; None when there is no goal or the value is not a number."""
    if goal is None or value != value:  # NaN
        return None
    op, target = goal["op"], float(goal["value"])
    if op in (">=", ">"):
        return GOAL_OPS[op](value + (EPS if op == ">=" else 0.0), target)
    return GOAL_OPS[op](value - (EPS if op == "<=" else 0.0), target)


def git_state() -> tuple[str, bool]:
    """(short commit, dirty), where dirty ignores the bench's own outputs (bench/results, docs/benchmarks.md)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    status = git("status", "--porcelain", "--", ".", ":(exclude)bench/results", ":(exclude)docs/benchmarks.md")
    return commit, bool(status)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """The machine as the figures depend on it. Torch threads are read when this is called: after the bench set
    them (BackboneWorker sets them to the node's cores, as a replica does)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "bf16_units": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),  # bf16 autocast is on by default there
        "libraries": {name: version(name) for name in ("transformers", "peft", "ray", "grpcio", "sqlalchemy")},
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def run_info() -> dict[str, Any]:
    commit, dirty = git_state()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "dirty": dirty,
        "machine": machine(),
    }


def filesystem_of(path: str | Path) -> str:
    """The filesystem type holding `path` (longest mount point in /proc/mounts): tmpfs makes fsync free."""
    p, best, kind = str(Path(path).resolve()), "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and (p == parts[1] or p.startswith(parts[1].rstrip("/") + "/")) and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def add_flags(ap: Any) -> None:
    """The two flags every bench has."""
    ap.add_argument("--json", metavar="PATH", default=None,
                    help="also write the printed figures, settings and machine as JSON to PATH")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes: a seconds-long pipeline check; its record is marked quick (not a result)")


class Record:
    """Collects the figures a bench prints; `write(path)` stores them (no-op when path is None)."""

    def __init__(self, bench: str, settings: dict[str, Any], quick: bool, argv: Sequence[str] | None = None):
        argv = list(sys.argv[1:] if argv is None else argv)
        self.bench, self.quick = bench, quick
        self.command = shlex.join(["python", f"bench/{bench}.py", *argv])
        self.settings = {k: v for k, v in settings.items() if k not in ("json", "quick")}
        self.figures: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.details: dict[str, Any] = {}
        self.load_at_start = round(os.getloadavg()[0], 2)

    def figure(self, name: str, value: float, unit: str = "", *, decimals: int = 3, goal: str | None = None,
               interval: tuple[float, float] | None = None, per_seed: Sequence[float] | None = None,
               signed: bool = False) -> float:
        """Record one printed figure. `goal` is e.g. ">= 0.97" (in the figure's unit). Returns `value`."""
        g = None
        if goal is not None:
            op, target = goal.split()
            if op not in GOAL_OPS:
                raise ValueError(f"goal operator {op!r} not in {sorted(GOAL_OPS)}")
            g = {"op": op, "value": float(target)}
        if any(f["name"] == name for f in self.figures):
            raise ValueError(f"figure {name!r} recorded twice")
        self.figures.append({
            "name": name, "value": float(value), "unit": unit, "decimals": decimals, "signed": signed, "goal": g,
            "met": goal_met(float(value), g),
            "interval": [float(interval[0]), float(interval[1])] if interval is not None else None,
            "per_seed": [float(v) for v in per_seed] if per_seed is not None else None,
        })
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        run = run_info()
        run["load_avg_at_start"] = self.load_at_start
        return {"schema": SCHEMA, "bench": self.bench, "quick": self.quick, "command": self.command,
                "settings": self.settings, "run": run, "figures": self.figures, "notes": self.notes,
                "details": self.details}

    def write(self, path: str | None) -> None:
        if not path:
            return
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")
        print(f"[{self.bench}] wrote {path}{' (QUICK: a pipeline check, not a result)' if self.quick else ''}")
