"""Classify load from background threads, for tests that break something while calls are in flight."""

from __future__ import annotations

import threading

from promptbank import Client
from promptbank.client import RpcError


def same_scores(got: object, want: list[dict[str, float]], tol: float = 1e-5) -> bool:
    """Row by row, label by label, within `tol`."""
    return isinstance(got, list) and len(got) == len(want) and all(
        g.keys() == w.keys() and all(abs(g[k] - w[k]) <= tol for k in w) for g, w in zip(got, want, strict=True))


class ClassifyLoad:
    """`threads` clients classifying `rows` in a loop until `stop()`; every answer's scores and every failure."""

    def __init__(self, address: str, rows: list[tuple[str, str]], threads: int):
        self.answers: list[object] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(address, rows)) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, address: str, rows: list[tuple[str, str]]) -> None:
        with Client(address, timeout=120) as c:
            while not self._stop.is_set():
                try:
                    self.answers.append([p.scores for p in c.classify(rows)])
                except RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(180)
