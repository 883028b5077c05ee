"""The SQLite connections of one SQLiteStorage and their life: open, follow the event
loop, start over after fork, run statements.

* Statements run on the storage's own thread (``_sqlite_thread``, written the way
  aiosqlite is), so the event loop never waits for the disk. One such connection per
  storage; an asyncio lock keeps work from interleaving on it, and a transaction is one
  trip to that thread.
* A second connection, used on the loop's thread for a lone caller's inserts, never
  waits for a lock (``_inline``); it is opened and closed with the first.
* Fork: a child never shares SQLite's lock bookkeeping with the parent's connections
  (see ``_forksafe``); it opens its own on first use.
* Loop following: when the loop the connections belong to shuts down (``_loop_end``) or
  a new loop uses the storage, they are closed and opened again on the new loop.

The rows, claims and inserts are ``SQLiteStorage``'s (``sqlite.py``), which extends
this class through two hooks, ``_opened`` and ``_forked``, and ``_insert``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from .. import _process
from .._loop_end import call_at_loop_end
from ..exceptions import ClosedError, ConfigurationError, StorageError
from ._forksafe import is_busy
from ._group_commit import GroupCommit
from ._inline import InlineWriter
from ._sqlite_thread import ThreadConnection

__all__ = ["SQLiteConnections"]

logger = logging.getLogger("asynctracker")

# SQLite builds older than 3.32 allow 999 bound parameters per statement.
MAX_PARAMS = 999
# Bytes the WAL is cut back to after a checkpoint that emptied it.
_WAL_SIZE_LIMIT = 16 * 1024 * 1024
# Connections (and their loop-end hooks) copied from the parent by fork(); see
# _forget_parent.
_INHERITED: list[object] = []

# ``dest``: the collector a row is meant for (``destinations.id``), so that one file
# shared by programs sending to different collectors never sends a row to the wrong one;
# NULL for rows stored before an emitter bound the storage (or by an older version).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    owner TEXT,
    claimed_until REAL,
    dest INTEGER
);
CREATE INDEX IF NOT EXISTS events_owner ON events(owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS destinations (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE
);
"""


async def _add_dest_column(conn: ThreadConnection) -> None:
    """Files made before rows carried their collector get the column (NULL for the rows
    already there: the first emitter opened on the file sends them, as before)."""
    columns, _ = await conn.fetch("PRAGMA table_info(events)")
    if any(column[1] == "dest" for column in columns):
        return
    try:
        await conn.fetch("ALTER TABLE events ADD COLUMN dest INTEGER")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # another process added it first
            raise


class SQLiteConnections:
    """The connections of one storage file, opened on first use (see the module)."""

    def __init__(
        self, path: Path, *, synchronous: str, busy_timeout: float, inline_writes: bool
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._inline_writes = inline_writes and synchronous in ("OFF", "NORMAL")
        self._conn: ThreadConnection | None = None
        self._inline: InlineWriter | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._pid = os.getpid()
        self._forks = _process.forks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_end: AsyncGenerator[None, None] | None = None
        self._lock: asyncio.Lock | None = None
        self._group = self._new_group()
        self._closed = False

    def _new_group(self) -> GroupCommit:
        return GroupCommit(self._insert, max_rows=MAX_PARAMS)

    async def _insert(self, raws: list[str]) -> None:
        """Write these rows in one transaction (``SQLiteStorage`` defines it)."""
        raise NotImplementedError

    def _opened(self) -> None:
        """Hook: a new connection was just opened."""

    def _forked(self) -> None:
        """Hook: this is a forked child; forget the parent's per-process state."""

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the database. Called for you on first use.

        Several processes may open the same file at the same moment: lock contention
        while switching to WAL or creating the table is retried until busy_timeout.
        Raises StorageError when the file cannot be opened, is not a database, or stays
        locked.
        """
        await self._connection()

    async def _connection(self) -> ThreadConnection:
        if self._closed:
            raise ClosedError(f"{self!r} was closed")
        self._forks = _process.forks
        if self._pid != os.getpid():
            self._forget_parent()
        if self._loop is not asyncio.get_running_loop():
            await self._follow_loop()
        if self._conn is not None:
            return self._conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._conn is None:
                conn = await self._connect()
                if self._inline_writes:
                    self._inline = await self._open_inline()
                self._conn = conn
                self._opened()
                self._loop_end = await call_at_loop_end(self._loop_ended)
        return self._conn

    async def _loop_ended(self) -> None:
        """The event loop is shutting down with this storage open (see ``_loop_end``):
        close the connection while the loop can still take its thread's replies. The
        next loop that uses this storage opens a new one."""
        if self._closed or self._loop is not asyncio.get_running_loop():
            return
        conn, self._conn = self._conn, None
        self._loop = None
        self._loop_end = None
        self._lock = None
        self._group = self._new_group()
        await self._close_inline()
        if conn is not None:
            await conn.close()

    def _forget_parent(self) -> None:
        """After fork: the parent's connection thread does not exist here. Start over."""
        self._pid = os.getpid()
        self._forked()
        # The parent's connection was closed at the fork (_forksafe); its thread does
        # not exist here.
        if self._loop_end is not None:
            # Collected, it would schedule itself on the parent's loop, whose wake-up
            # socket this process shares with the parent.
            _INHERITED.append(self._loop_end)
            self._loop_end = None
        self._conn = None
        self._inline = None  # closed in the child at the fork (_forksafe)
        self._checkpointing = None
        self._lock = None
        self._group = self._new_group()

    async def _follow_loop(self) -> None:
        """Move to the event loop this storage is now used from.

        After the loop it was used on has stopped (two ``asyncio.run`` calls in a row,
        say), that loop's lock, writer task and futures are dead: start over with a new
        connection. The old one is stopped without a reply (its loop is gone).
        """
        loop = asyncio.get_running_loop()
        old, self._loop = self._loop, loop
        if old is None:
            return
        if old.is_running():
            self._loop = old
            raise ConfigurationError(
                f"{self!r} is in use on another running event loop; use one storage per event loop"
            )
        conn, self._conn = self._conn, None
        self._loop_end = None  # its loop closed without closing it: never runs
        self._lock = None
        self._group = self._new_group()
        await self._close_inline()
        if conn is not None:
            conn.stop()

    async def _open_inline(self) -> InlineWriter | None:
        """The loop-thread connection for lone inserts, or None if it cannot be had
        (every insert then runs on the thread)."""
        try:
            return await asyncio.to_thread(
                InlineWriter.open, self.path, self._synchronous, _WAL_SIZE_LIMIT
            )
        except sqlite3.Error as exc:
            logger.warning("SQLite inserts will run on a thread only: %s", exc)
            return None

    async def _close_inline(self) -> None:
        inline, self._inline = self._inline, None
        self._checkpointing = None
        if inline is not None:
            await asyncio.to_thread(inline.close)

    async def _connect(self) -> ThreadConnection:
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.01
        while True:
            conn: ThreadConnection | None = None
            try:
                conn = await ThreadConnection.connect(self.path, timeout=self._busy_timeout)
                await conn.fetch(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
                # New files only (a no-op once a table exists): lets _reclaim_space
                # hand the pages of a drained backlog back to the file system.
                await conn.fetch("PRAGMA auto_vacuum=INCREMENTAL")
                await conn.fetch("PRAGMA journal_mode=WAL")
                await conn.fetch(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
                await conn.fetch(f"PRAGMA synchronous={self._synchronous}")
                await conn.executescript(_SCHEMA)
                await _add_dest_column(conn)
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    await conn.close()
                if is_busy(exc) and time.monotonic() < deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                raise StorageError(f"cannot open SQLite storage {self.path}: {exc}") from exc

    async def _close_connections(self) -> None:
        """Close both connections for good (the end of ``aclose``)."""
        self._closed = True
        conn, self._conn = self._conn, None
        loop_end, self._loop_end = self._loop_end, None
        if conn is not None:
            await conn.close()
        if loop_end is not None:
            await loop_end.aclose()  # nothing left for it to do

    # -- statement helpers ------------------------------------------------------------

    async def _fetch(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Run one statement as its own transaction, in one trip to the SQLite thread.

        Keep result sets to a row or two on hot paths: the sqlite3 module takes the GIL
        back for every row, and while the event loop is busy each of those waits up to
        the interpreter's switch interval (5 ms). Rows are aggregated in SQL instead.
        """
        rows, _ = await self._execute(sql, params)
        return rows

    async def _execute(
        self, sql: str, params: Sequence[object] = ()
    ) -> tuple[list[sqlite3.Row], int]:
        """Like _fetch, and also return how many rows the statement changed."""
        conn = self._conn
        if (
            conn is None
            or self._closed
            or self._forks != _process.forks
            or self._loop is not asyncio.get_running_loop()
        ):
            conn = await self._connection()
        assert self._lock is not None
        try:
            async with self._lock:
                return await conn.fetch(sql, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def _transaction(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[list[sqlite3.Row]]:
        """Run statements in one transaction (all or nothing); their rows, in order."""
        if len(statements) == 1:
            return [await self._fetch(*statements[0])]
        conn = await self._connection()
        assert self._lock is not None
        try:
            async with self._lock:
                # One trip: BEGIN, the statements and COMMIT (or ROLLBACK) run together
                # on the SQLite thread, even if this task is cancelled meanwhile.
                return await conn.transaction(statements)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> StorageError:
        if is_busy(exc):
            return StorageError(
                f"SQLite storage {self.path} stayed locked by another connection for "
                f"more than {self._busy_timeout}s: {exc}"
            )
        return StorageError(f"SQLite storage {self.path} failed: {exc}")
