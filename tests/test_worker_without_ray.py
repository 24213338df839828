"""A replica runs where Ray, SQLAlchemy and Alembic are not installed (the GPU machines scripts/device_check.sh
targets): the worker modules import, load a backbone, classify, train and generate in a process that cannot
import them, and the device check's set-up runs in a dry run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("ray", "sqlalchemy", "alembic")

# Absent, as on a machine without them: `import ray` raises ImportError and importlib.util.find_spec("ray") is
# None (what libraries probe with), and a finder refuses any submodule that would slip past.
PRELUDE = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed here")
        return None
for name in BLOCKED:
    sys.modules[name] = None
sys.meta_path.insert(0, Absent())
"""


def run(code: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_the_blocking_itself_works() -> None:
    out = run("import ray")
    assert out.returncode != 0 and "ray" in out.stderr


def test_a_worker_serves_and_trains_without_ray_or_the_bank(tmp_path: Path) -> None:
    out = run(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, "bench")
        from _synthetic import LLAMA_TINY, causal_lm
        import workers.actor, workers.engine, workers.train, workers.generate, workers.devices, workers.weights
        from bank.codec import encode_prompt, sha256_hex
        from promptbank_domain.task import TaskSpec
        from promptbank_domain.train_config import TrainConfig
        from workers.actor import BackboneWorker
        from workers.protocol import ClassifyBatch, EventKind, GenerateRequest, TrainRequest
        import torch

        path = causal_lm(Path({str(tmp_path)!r}) / "m", LLAMA_TINY, "bf16")
        w = BackboneWorker(path, num_threads=1, dtype="bf16")
        assert w.info().node_id == "" and w.info().dtype == "bf16"
        task = TaskSpec(labels=("negative", "positive"), label_words=("bad", "good"))
        blob = encode_prompt(torch.randn(4, w.bb.hidden_size))
        key = sha256_hex(blob)
        scores = w.classify(ClassifyBatch([(key, "a good day")], {{key: blob}}, {{key: task}}))
        assert len(scores[0]) == 2
        cfg = TrainConfig.from_dict({{"max_steps": 2, "batch_size": 4, "prompt_kind": "input", "eval_fraction": 0.25}})
        events = list(w.train(TrainRequest("j", task, cfg, [("good day", "positive"), ("bad day", "negative")] * 4)))
        assert events[-1].kind is EventKind.RESULT, events[-1]
        pieces = list(w.generate(GenerateRequest(key, {{key: blob}}, "the cat", max_new_tokens=3)))
        assert pieces[-1].finish_reason is not None
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r} and sys.modules[m] is not None)
        assert not loaded, loaded
        print("served without", {BLOCKED!r})
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "served without" in out.stdout


def test_the_device_check_dry_run_does_its_set_up_steps() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh"), "--dry-run"], capture_output=True,
                         text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for step in ("worker modules import without ray, sqlalchemy, alembic", "1B model: 1.1", "pytest --noconftest",
                 "bench/device.py", "dry run: nothing measured"):
        assert step in out.stdout, (step, out.stdout)
