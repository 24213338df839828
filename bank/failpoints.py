"""Failpoints: named places where a test makes the process die (SIGKILL), to prove what survives a crash.

Inert unless the environment names the point: `PROMPTBANK_FAILPOINT=publish.before_commit` kills the process
the first time it reaches `failpoint("publish.before_commit")`. Production never sets the variable.
"""

from __future__ import annotations

import os
import signal

ENV = "PROMPTBANK_FAILPOINT"
POINTS = frozenset({
    "publish.before_commit",  # bank.jobs.succeed: the new version is written, the transaction not committed
})


def failpoint(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}")
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
