"""The one door to SQL for an asyncio server: writes run one at a time on a writer thread, each in one session
that then commits; reads run on a pool of reader threads, so a read never queues behind a write (training
events, checkpoints) and a slow read never holds up a write.

The coordinator hands `run` (write) or `read` a function of bank calls; it writes no queries itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from bank.db import make_engine, make_sessionmaker, safe_url
from promptbank_api.errors import Aborted, Unavailable

__all__ = ["BankDB", "Session"]

T = TypeVar("T")
READERS = 4  # reader threads (and pooled connections); SQLite in WAL mode reads alongside its one writer


class BankDB:
    """Serialises SQL work on one thread: one writer for embedded SQLite, and the event loop never blocks."""

    def __init__(self, url: str, password: str = ""):
        if "://" not in url and Path(url).expanduser().is_dir():
            raise Unavailable(f"cannot open the bank: {url} is a directory; give a SQLite file path or a database URL")
        try:
            self.engine = make_engine(url, password)
        except (OperationalError, ArgumentError, InterfaceError) as exc:
            first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
            raise Unavailable(f"cannot open the bank at {safe_url(url)}: {first}") from None
        self.sessions = make_sessionmaker(self.engine)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bank")
        self._readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="bank-read")

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in one transaction. A unique or foreign-key violation that the bank's own checks did not
        catch means another process (a second coordinator on the same database) changed the same rows
        between check and write: nothing was written, and the caller gets ABORTED to retry."""
        with self.sessions() as s:
            try:
                result = fn(s)
                s.commit()
                return result
            except IntegrityError as exc:
                s.rollback()
                raise Aborted("a concurrent change to the same resource won; retry the request") from exc
            except BaseException:
                s.rollback()
                raise

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` on the writer thread and commit."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.run_sync, fn)

    def read_sync(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in a session that is rolled back, never committed: whatever `fn` changes is discarded."""
        with self.sessions() as s:
            try:
                return fn(s)
            finally:
                s.rollback()

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run a read-only `fn` on a reader thread: it sees every committed write and waits for none."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, self.read_sync, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()
