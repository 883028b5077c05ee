"""One SQLite file as SQLiteStorage uses it: its worker thread, opening, statements.

Statements run on the storage's own daemon thread, one job (a transaction is one) at a
time; another process's lock is waited out between attempts, outside the fork gate. A
hard link or a file bind-mounted on its own (``docker -v host/x.db:/app/x.db``) gives
each name its own WAL and lock index and corrupts the database: both are refused.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._threads import Worker
from ..exceptions import StorageError
from . import _sqlite_schema
from ._forksafe import ForkSafeConnection, is_busy

__all__ = ["MAX_PARAMS", "WAL_SIZE_LIMIT", "Database", "chunks", "placeholders", "transaction"]

# SQLite builds older than 3.32 allow 999 bound parameters per statement.
MAX_PARAMS = 999
# Bytes the WAL is cut back to after a checkpoint that emptied it.
WAL_SIZE_LIMIT = 16 * 1024 * 1024
# How long one attempt waits for a lock inside SQLite (inside the fork gate); longer
# waits happen between attempts.
_ATTEMPT_WAIT_MS = 50

_T = TypeVar("_T")
_OCTAL = re.compile(r"\\([0-7]{3})")


def chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    """``items`` in slices of at most ``size`` (statements have a parameter limit)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def placeholders(count: int) -> str:
    """``?,?,...``: one parameter per value of an ``IN (...)`` list."""
    return ",".join("?" * count)


def transaction(conn: ForkSafeConnection, body: Callable[[ForkSafeConnection], _T]) -> _T:
    """Run ``body(conn)`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT`` (ROLLBACK if it
    raises), in the fork gate. ``body`` uses ``conn.execute``."""
    with conn.in_gate():
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result


def _is_mount_point(path: Path) -> bool:
    """Is ``path`` a mount point (/proc/self/mountinfo, whose paths escape space, tab,
    newline and backslash as octal)? A file bound from the same filesystem keeps its
    folder's device number."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            points = {_OCTAL.sub(lambda m: chr(int(m[1], 8)), line.split()[4]) for line in mounts}
    except (OSError, IndexError):
        return False
    return os.path.realpath(path) in points


class Database:
    """The worker-thread connection of one file (see the module). Thread-safe to call."""

    def __init__(self, path: Path, *, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.worker = Worker("asynctracker-sqlite")
        self._conn: ForkSafeConnection | None = None
        self._identity: tuple[int, int] | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def forget(self) -> None:
        """In a forked child: the parent's connection is closed and its thread gone."""
        self._conn = None

    # -- on the worker thread --------------------------------------------------------

    def _retry(self, function: Callable[[], _T], doing: str) -> _T:
        """Run ``function`` again while another connection holds a lock, up to
        ``busy_timeout`` (waiting between attempts); sqlite3 errors become StorageError."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.002
        while True:
            try:
                return function()
            except sqlite3.Error as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise self.error(exc, doing) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def attempt(self, function: Callable[[ForkSafeConnection], _T]) -> _T:
        """Run ``function`` on the open connection (see ``_retry``)."""

        def once() -> _T:
            if self._conn is None:
                raise StorageError(f"SQLite storage {self.path} is not open")
            return function(self._conn)

        return self._retry(once, "failed")

    def _open(self) -> None:
        if self._conn is None:
            self._conn = self._retry(self._connect, "cannot be opened")

    def _connect(self) -> ForkSafeConnection:
        """Open the file (created if need be), check it is one file, set it up."""
        conn = ForkSafeConnection(
            self.path,
            timeout=_ATTEMPT_WAIT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,  # a fork and the exit close it elsewhere
        )
        try:
            self._check_one_file()
            conn.script(  # auto_vacuum: new files only (a no-op once a table exists)
                "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; "
                f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}; "
                f"PRAGMA synchronous={self.synchronous};"
            )
            transaction(conn, _sqlite_schema.migrate)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_one_file(self) -> None:
        stat = os.stat(self.path)
        if stat.st_nlink > 1:
            raise StorageError(
                f"SQLite storage {self.path} has {stat.st_nlink} names (hard links): SQLite "
                "keeps a write-ahead log per name, and two logs for one database corrupt "
                "it. Give the file one name (or copy it)."
            )
        if stat.st_dev != os.stat(self.path.parent).st_dev or _is_mount_point(self.path):
            raise StorageError(
                f"SQLite storage {self.path} is mounted on its own (a single-file bind "
                "mount?): its write-ahead log and lock index live in the folder, which "
                "the other side of the mount does not share, and the database would be "
                "corrupted. Mount the folder that holds it, never the file."
            )
        self._identity = (stat.st_dev, stat.st_ino)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- from the event loop ---------------------------------------------------------

    async def open(self) -> None:
        """Open on the worker thread (idempotent; concurrent callers queue behind); a
        failed open ends the thread, so nothing outlives it (the next open starts one)."""
        try:
            await self.worker.call(self._open)
        except BaseException:
            if self._conn is None:
                self.worker.stop()
            raise

    async def close(self) -> None:
        """Close the connection after the work queued before it, and end the thread."""
        try:
            await self.worker.call(self._close)
        finally:
            self.worker.stop()

    def run(self, function: Callable[[ForkSafeConnection], _T]) -> asyncio.Future[_T]:
        """Run ``function(conn)`` on the worker (see ``attempt``)."""
        return self.worker.call(self.attempt, function)

    async def execute(self, sql: str, params: Sequence[object] = ()) -> tuple[list[Any], int]:
        """One statement as its own transaction: its rows and how many rows it changed.
        Keep result sets to a row or two on hot paths (the sqlite3 module takes the GIL
        back for every row): aggregate in SQL instead."""
        return await self.run(lambda conn: conn.rows(sql, params))

    async def changed(self, statements: Sequence[tuple[str, Sequence[object]]]) -> int:
        """UPDATE statements in one transaction; how many rows they changed, in all."""

        def body(conn: ForkSafeConnection) -> int:
            return sum(max(conn.execute(sql, params).rowcount, 0) for sql, params in statements)

        return await self.run(lambda conn: transaction(conn, body)) if statements else 0

    async def delete(self, statements: Sequence[tuple[str, Sequence[object]]]) -> int:
        """DELETE statements in one transaction, the row count kept right (every
        delete goes through ``_sqlite_schema.delete``); how many rows they deleted."""
        body = functools.partial(_sqlite_schema.delete, statements=statements)
        return await self.run(lambda conn: transaction(conn, body)) if statements else 0

    def lost(self) -> bool:
        """Was the file deleted or replaced since it was opened?"""
        if self._identity is None:
            return False
        try:
            stat = os.stat(self.path)
        except OSError:
            return True
        return (stat.st_dev, stat.st_ino) != self._identity

    def error(self, exc: sqlite3.Error, doing: str = "failed") -> StorageError:
        """A sqlite3 error as the StorageError callers catch."""
        if is_busy(exc):
            return StorageError(
                f"SQLite storage {self.path} {doing}: it stayed locked by another "
                f"connection for more than {self.busy_timeout}s: {exc}"
            )
        return StorageError(f"SQLite storage {self.path} {doing}: {exc}")
