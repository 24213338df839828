"""The committed stubs are exactly what scripts/gen_protos.sh produces from protos/."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, env=env,
                   capture_output=True)
    fresh = sorted(p.name for p in (tmp_path / "promptbank_api" / "v1").iterdir() if p.name != "__init__.py")
    committed = sorted(p.name for p in (ROOT / "promptbank_api" / "v1").iterdir()
                       if p.suffix in (".py", ".pyi") and p.name != "__init__.py")
    assert fresh == committed, "generated file set differs; run scripts/gen_protos.sh"
    stale = [n for n in fresh if not filecmp.cmp(tmp_path / "promptbank_api" / "v1" / n, ROOT / "promptbank_api" / "v1" / n, shallow=False)]
    assert not stale, f"stale generated stubs {stale}; run scripts/gen_protos.sh and commit"
