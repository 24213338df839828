"""The soak bench's short form as a test: 1,000 mixed-task Classify requests at concurrency 64 against a
coordinator process answer without one error, and neither the coordinator's nor its workers' memory grows
past 10% after warm-up. (Its latency figures are the bench's business, not asserted here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_thousand_requests_soak_clean(tiny_encoder: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "bench/soak.py", "--requests", "1000", "--concurrency", "64",
                          "--model", tiny_encoder, "--json", str(tmp_path / "soak.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    figures = {f["name"]: f for f in json.loads((tmp_path / "soak.json").read_text())["figures"]}
    assert figures["requests"]["value"] == 1000 and figures["errors"]["value"] == 0
    for who in ("coordinator", "workers"):
        assert figures[f"{who} RSS after warm-up"]["value"] > 50, "no process memory was read"
        growth = figures[f"{who} RSS growth after warm-up"]
        assert growth["met"], f"{who} memory grew {growth['value']:+.1%} after warm-up"
