"""Failpoints: named places where a test makes the process die (SIGKILL), to prove what survives a crash.

Inert unless the environment names the point: `PROMPTBANK_FAILPOINT=publish.before_commit` kills the process
the first time it reaches `failpoint("publish.before_commit")`, and `publish.before_commit@3` the third time
(so one process can first do the thing right). Production never sets the variable.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "PROMPTBANK_FAILPOINT"
POINTS = frozenset({
    "publish.before_commit",  # bank.jobs.succeed: the new version is written, the transaction not committed
})


_reached: Counter[str] = Counter()


def failpoint(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}")
    point, _, nth = os.environ.get(ENV, "").partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
