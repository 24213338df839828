"""The served-row log: Classify hands every answered row here and returns at once; a background task writes
them to the bank in batches (one transaction per flush, not one per request), and prunes rows past the
retention now and then. RecordOutcomes flushes first, so an id answered a moment ago is known to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bank import outcomes
from bank.writer import BankDB, Tx
from promptbank_domain.live import ServedRow

log = logging.getLogger("promptbank.outcomes")
FLUSH_S = 0.5  # rows wait at most about this long before they are written
FLUSH_ROWS = 5_000  # ... or until this many wait
MAX_PENDING = 200_000  # past this (the bank is down or slow) the oldest unwritten rows are dropped, and counted
PRUNE_S = 60.0  # retention is applied this often


class OutcomeLog:
    def __init__(self, db: BankDB, keep_days: float, keep_rows: int, on_drop: Callable[[int], None] | None = None):
        self.db, self.keep_days, self.keep_rows, self.on_drop = db, keep_days, keep_rows, on_drop
        self.pending: list[ServedRow] = []
        self.dropped = 0  # rows lost because the bank could not keep up (logged)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time: rows reach the bank in the order they were served
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outcome-log")

    def add(self, rows: list[ServedRow]) -> None:
        self.pending.extend(rows)
        if len(self.pending) > MAX_PENDING:
            over = len(self.pending) - MAX_PENDING
            del self.pending[:over]
            self.dropped += over
            if self.on_drop is not None:
                self.on_drop(over)
            log.warning("outcome log: the bank is behind; dropped %d served row(s) (%d so far): their result ids "
                        "will read as unknown", over, self.dropped)
        if len(self.pending) >= FLUSH_ROWS:
            self._wake.set()

    async def flush(self) -> None:
        """Write every row added so far (and prune when it is time)."""
        async with self._lock:
            rows, self.pending = self.pending, []
            prune = time.monotonic() - self._pruned_at >= PRUNE_S
            if not rows and not prune:
                return

            def q(s: Tx) -> int:
                if rows:
                    outcomes.record_served(s, rows)
                return outcomes.prune(s, keep_days=self.keep_days, keep_rows=self.keep_rows) if prune else 0

            try:
                gone = await self.db.run(q)
            except BaseException:
                self.pending[:0] = rows  # written next time (the bound above still holds)
                raise
            if prune:
                self._pruned_at = time.monotonic()
                if gone:
                    log.info("outcome log: deleted %d served row(s) past the retention", gone)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_S)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the bank may be away for a while; the rows wait for it
                log.exception("outcome log: could not write %d served row(s); retrying", len(self.pending))
                await asyncio.sleep(FLUSH_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - closing must not fail on a bank that went first
            log.exception("outcome log: %d served row(s) were not written at shutdown", len(self.pending))
