"""The thread a SQLiteStorage's connection lives on: one loop over a queue of
(future, function), the way ``aiosqlite/core.py`` is written.

Why this package's own thread rather than aiosqlite's: the storage needs three things
aiosqlite 0.22 has no public API for, and had them only by reaching into it.

* A daemon thread. aiosqlite's worker is not one, and the interpreter joins every
  non-daemon thread before it runs ``atexit`` handlers, so a program that never closed
  its tracker waited at exit forever. (Nothing is lost by not waiting: an insert is
  committed before its ``track_*`` returns, and ``_forksafe`` closes the file at exit.)
* A function of ours run on the thread: a transaction is BEGIN, its statements and
  COMMIT in one trip, even if the caller is cancelled meanwhile. aiosqlite runs only
  its own methods there (a sentinel SQL string smuggled the batch through ``execute``).
* Surviving a reply to a closed event loop. aiosqlite's thread dies of it; a storage
  whose loop ended without closing it (``asyncio.run`` twice) stops its old thread
  without a reply instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

from .._threads import run_and_reply
from ._forksafe import ForkSafeConnection

__all__ = ["THREAD_NAME", "ThreadConnection"]

#: The name of every storage's SQLite thread.
THREAD_NAME = "asynctracker-sqlite"

logger = logging.getLogger("asynctracker")

_T = TypeVar("_T")
_Job = tuple["asyncio.Future[Any] | None", Callable[[], Any]]


def _work(jobs: SimpleQueue[_Job | None]) -> None:
    """The thread: run each job, post its outcome to the job's loop; None ends it.

    A static function over the queue alone, so the connection object can be collected
    while its thread waits."""
    while True:
        job = jobs.get()
        if job is None:
            return
        future, function = job
        if future is not None:
            run_and_reply(future, function)
            continue
        try:  # a job nobody waits for (closing after the loop stopped)
            function()
        except BaseException:
            logger.debug("SQLite job without a reply failed", exc_info=True)


class ThreadConnection:
    """A ForkSafeConnection opened on, and used only from, its own daemon thread."""

    def __init__(self, db: ForkSafeConnection, jobs: SimpleQueue[_Job | None]) -> None:
        self.db = db
        self._jobs = jobs

    @classmethod
    async def connect(cls, path: Path, *, timeout: float) -> ThreadConnection:
        """Start a thread and open ``path`` on it. Raises sqlite3.Error (the thread is
        stopped then)."""
        jobs: SimpleQueue[_Job | None] = SimpleQueue()
        threading.Thread(target=_work, args=(jobs,), name=THREAD_NAME, daemon=True).start()
        opened: asyncio.Future[ForkSafeConnection] = asyncio.get_running_loop().create_future()
        # check_same_thread=False: a fork and the interpreter's exit close it from
        # another thread (see _forksafe), each time behind its gate.
        jobs.put(
            (
                opened,
                functools.partial(
                    ForkSafeConnection,
                    path,
                    timeout=timeout,
                    isolation_level=None,
                    check_same_thread=False,
                ),
            )
        )
        try:
            db = await opened
        except BaseException:
            jobs.put(None)
            raise
        return cls(db, jobs)

    def call(self, function: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        """Run ``function(*args)`` on the thread; the future has its outcome."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, functools.partial(function, *args)))
        return future

    def fetch(
        self, sql: str, params: Sequence[object] = ()
    ) -> asyncio.Future[tuple[list[Any], int]]:
        """One statement: its rows, and how many rows it changed."""
        return self.call(self.db.fetch, sql, params)

    def transaction(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> asyncio.Future[list[list[Any]]]:
        """Statements in one ``BEGIN IMMEDIATE`` transaction, in one trip."""
        return self.call(self.db.transaction, statements)

    def executescript(self, script: str) -> asyncio.Future[object]:
        """A script run by ``sqlite3_exec``, which steps each statement to its end."""
        return self.call(self.db.executescript, script)

    async def close(self) -> None:
        """Close the connection after the work queued before, then end the thread."""
        try:
            await self.call(self.db.close)
        finally:
            self._jobs.put(None)

    def stop(self) -> None:
        """Close and end without a reply (its loop has stopped, or may have)."""
        self._jobs.put((None, self.db.close))
        self._jobs.put(None)
