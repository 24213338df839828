"""The one door to SQL for an asyncio server: writes run one at a time on a writer thread, each in one session
that then commits; reads run on a pool of reader threads, so a read never queues behind a write (training
events, checkpoints) and a slow read never holds up a write.

The coordinator hands `run` (write) or `read` a function of bank calls; it writes no queries itself. That
function gets a `Tx`: an open unit of work to pass on to bank functions, which return read models, so neither
an ORM row nor a session type reaches the caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, NewType, ParamSpec, TypeVar

from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from bank.db import make_engine, make_sessionmaker, safe_url
from promptbank_api.errors import Aborted, PromptBankError, Unavailable

__all__ = ["BankDB", "Tx"]

Tx = NewType("Tx", Session)  # one session, handed through `run`/`read` to bank functions and used by nothing else

T = TypeVar("T")
P = ParamSpec("P")
# The timing hook: ("read" or "write", seconds the work held its session, outcome): "ok"; "refused" when it raised
# a domain error (NotFound, a lost race: ABORTED, ...); "error" for anything else (the database failed).
Observe = Callable[[str, float, str], None]
READERS = 4  # reader threads (and pooled connections); SQLite in WAL mode reads alongside its one writer


class BankDB:
    """Serialises SQL work on one thread: one writer for embedded SQLite, and the event loop never blocks."""

    def __init__(self, url: str, password: str = "", observe: Observe | None = None):
        if "://" not in url and Path(url).expanduser().is_dir():
            raise Unavailable(f"cannot open the bank: {url} is a directory; give a SQLite file path or a database URL")
        try:
            self.engine = make_engine(url, password)
        except (OperationalError, ArgumentError, InterfaceError) as exc:
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise Unavailable(f"cannot open the bank at {safe_url(url)}: {first}") from None
        self.sessions = make_sessionmaker(self.engine)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bank")
        self._readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="bank-read")
        self.observe = observe  # the caller's timing hook (the coordinator's metrics); the bank knows no more of it

    def _observed(self, kind: str, began: float, failure: BaseException | None) -> None:
        if self.observe is not None:
            outcome = "ok" if failure is None else "refused" if isinstance(failure, PromptBankError) else "error"
            try:
                self.observe(kind, time.perf_counter() - began, outcome)
            except Exception:  # noqa: BLE001 - a broken hook must never fail a query
                pass

    def run_sync(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in one transaction. A unique or foreign-key violation that the bank's own checks did not
        catch means another process (a second coordinator on the same database) changed the same rows
        between check and write: nothing was written, and the caller gets ABORTED to retry."""
        began = time.perf_counter()
        failure: BaseException | None = None
        with self.sessions() as s:
            try:
                result = fn(Tx(s))
                s.commit()
                return result
            except IntegrityError as exc:
                s.rollback()
                failure = Aborted("a concurrent change to the same resource won; retry the request")
                raise failure from exc
            except BaseException as exc:
                s.rollback()
                failure = exc
                raise
            finally:
                self._observed("write", began, failure)

    async def run(self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(tx, *args, **kwargs)` on the writer thread and commit. Passing the arguments here (not in a
        lambda) binds them now, so a loop's variable needs no default-argument trick and they are type-checked."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self.run_sync, lambda tx: fn(tx, *args, **kwargs))

    def read_sync(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a session that is rolled back, never committed: whatever `fn` changes is discarded."""
        began = time.perf_counter()
        failure: BaseException | None = None
        with self.sessions() as s:
            try:
                return fn(Tx(s))
            except BaseException as exc:
                failure = exc
                raise
            finally:
                s.rollback()
                self._observed("read", began, failure)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run a read-only `fn` on a reader thread: it sees every committed write and waits for none."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, self.read_sync, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()
