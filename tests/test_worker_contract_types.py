"""mypy checks the worker contract: a call through coordinator/worker_client.py that does not fit the actor's own
method is a type error, and what a call returns is the method's result type, not `Any`.

Run the way scripts/test.sh runs mypy (pyproject's [tool.mypy], the project's cache: warm after test.sh's own run)
on a small module that calls the client wrongly, then rightly.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CALLS = '''
from coordinator.worker_client import WorkerClient, _call
from workers.actor import BackboneWorker
from workers.protocol import CancelRequest, ClassifyBatch


def calls(c: WorkerClient, batch: ClassifyBatch) -> None:
    c.classify(CancelRequest("j"))  # WRONG: classify takes a ClassifyBatch
    _call("", c.handle, BackboneWorker.cancel, batch)  # WRONG: the actor's cancel takes a CancelRequest
    _call("", c.handle, BackboneWorker.check_task)  # WRONG: check_task's request is missing
    c.classify(batch)
    _call("", c.handle, BackboneWorker.cancel, CancelRequest("j"))
    reveal_type(c.info())
    reveal_type(_call("", c.handle, BackboneWorker.init_losses, None))  # WRONG: None is no InitLossesRequest
    reveal_type(c.train_group([]))
'''


def test_a_call_that_does_not_fit_the_actor_method_fails_mypy(tmp_path: Path) -> None:
    module = tmp_path / "contract_calls.py"
    module.write_text(CALLS)
    run = subprocess.run([sys.executable, "-m", "mypy", str(module)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    lines = CALLS.splitlines()
    wrong = {i + 1 for i, line in enumerate(lines) if "# WRONG" in line}
    errors = {int(m[1]) for m in re.finditer(r"contract_calls\.py:(\d+): error:", run.stdout)}
    assert run.returncode == 1 and errors == wrong, run.stdout + run.stderr
    revealed = re.findall(r'Revealed type is "([^"]+)"', run.stdout)
    assert revealed == [
        "ray.includes.object_ref.ObjectRef[workers.protocol.BackboneInfo]",
        "ray.includes.object_ref.ObjectRef[dict[str, float]]",
        "typing.AsyncIterator[workers.protocol.TrainEvent]",
    ], run.stdout
