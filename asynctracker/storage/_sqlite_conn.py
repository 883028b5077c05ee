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
from typing import TypeVar

from .. import _process
from .._loop_end import call_at_loop_end
from ..exceptions import ClosedError, ConfigurationError, StorageError
from ._forksafe import is_busy
from ._group_commit import GroupCommit
from ._inline import InlineWriter
from ._sqlite_thread import ThreadConnection
from .base import EventRow

__all__ = ["MAX_PARAMS", "SQLiteConnections", "chunks", "placeholders"]

logger = logging.getLogger("asynctracker")

# SQLite builds older than 3.32 allow 999 bound parameters per statement.
MAX_PARAMS = 999
# Bytes the WAL is cut back to after a checkpoint that emptied it.
_WAL_SIZE_LIMIT = 16 * 1024 * 1024
# Connections (and their loop-end hooks) copied from the parent by fork(); see
# _forget_parent.
_INHERITED: list[object] = []
_SEPARATOR = "\x1e"  # ASCII record separator: escaped (\u001e) inside stored JSON
_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    """``items`` in slices of at most ``size`` (statements have a parameter limit)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def placeholders(count: int) -> str:
    """``?,?,...``: one parameter per value of an ``IN (...)`` list."""
    return ",".join("?" * count)


# ``dest``: the collector a row is meant for (``destinations.id``), so that one file
# shared by programs sending to different collectors never sends a row to the wrong one;
# NULL for rows stored before an emitter bound the storage (or by an older version).
# ``id`` is a plain rowid, not AUTOINCREMENT: that keeps a counter in the
# sqlite_sequence table, written by every insert (a second page per commit, about a
# quarter of a lone insert's time, see benchmarks/README.md). Ids grow while rows
# exist; once the newest rows are deleted their ids may be given again, so nothing
# remembers a row by its id alone (see _isolate.row_key and delete_claimed_rows).
_EVENTS_COLUMNS = """(
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL,
    owner TEXT,
    claimed_until REAL,
    dest INTEGER
)"""
_OWNER_INDEX = "CREATE INDEX IF NOT EXISTS events_owner ON events(owner) WHERE owner IS NOT NULL"
# Files made by earlier versions have AUTOINCREMENT: their table is rebuilt without
# it at open, rows and ids kept, when it holds at most this many rows (the copy holds
# the write lock; a larger backlog is left as it is and still works, just slower).
_REBUILD_MAX_ROWS = 10_000
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events {_EVENTS_COLUMNS};
{_OWNER_INDEX};
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


async def _drop_autoincrement(conn: ThreadConnection) -> None:
    """Rebuild a small table made with AUTOINCREMENT without it (see _SCHEMA), in one
    transaction: all rows, ids and claims kept."""
    rows, _ = await conn.fetch(
        "SELECT sql LIKE '%AUTOINCREMENT%' FROM sqlite_master "
        "WHERE type = 'table' AND name = 'events'"
    )
    if not rows or not rows[0][0]:
        return
    # Counted up to the limit only: a large backlog is not scanned at every open.
    (counted,), _ = await conn.fetch(
        "SELECT COUNT(*) FROM (SELECT 1 FROM events LIMIT ?)", (_REBUILD_MAX_ROWS + 1,)
    )
    if counted[0] > _REBUILD_MAX_ROWS:
        return
    columns = "id, event, owner, claimed_until, dest"
    await conn.transaction(
        [
            ("DROP TABLE IF EXISTS events_rebuilt", ()),
            (f"CREATE TABLE events_rebuilt {_EVENTS_COLUMNS}", ()),
            (f"INSERT INTO events_rebuilt({columns}) SELECT {columns} FROM events", ()),
            ("DROP TABLE events", ()),
            ("ALTER TABLE events_rebuilt RENAME TO events", ()),
            (_OWNER_INDEX, ()),
        ]
    )


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
        await self._follow()
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

    async def _follow(self) -> None:
        """Start over in a forked child; move to the running event loop."""
        if self._pid != os.getpid():
            self._forget_parent()
        if self._loop is not asyncio.get_running_loop():
            await self._follow_loop()

    def _detach(self) -> ThreadConnection | None:
        """Drop the per-loop state (connection, lock, loop-end hook, group commit);
        return the connection for the caller to close, stop or forget."""
        conn, self._conn = self._conn, None
        self._loop_end = None
        self._lock = None
        self._group = self._new_group()
        return conn

    async def _loop_ended(self) -> None:
        """The event loop is shutting down with this storage open (see ``_loop_end``):
        close the connection while the loop can still take its thread's replies. The
        next loop that uses this storage opens a new one."""
        if self._closed or self._loop is not asyncio.get_running_loop():
            return
        self._loop = None
        conn = self._detach()
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
        self._detach()
        self._inline = None  # closed in the child at the fork (_forksafe)
        self._checkpointing = None

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
        conn = self._detach()  # its loop-end hook never runs: that loop closed
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
                await _drop_autoincrement(conn)
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
        """Close both connections for good (the end of ``aclose``, whatever happened
        before it): a checkpoint under way ends first."""
        self._closed = True
        checkpointing = self._checkpointing
        await self._close_inline()
        if checkpointing is not None and checkpointing.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([checkpointing])
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

    async def _changed(self, statements: Sequence[tuple[str, Sequence[object]]]) -> int:
        """Run statements in one transaction; how many rows they changed in all."""
        if not statements:
            return 0
        if len(statements) == 1:
            return (await self._execute(*statements[0]))[1]
        changes = [("SELECT total_changes()", ())]
        before, *_, after = await self._transaction([*changes, *statements, *changes])
        return int(after[0][0]) - int(before[0][0])

    async def _script(self, script: str) -> None:
        """Run a script with ``sqlite3_exec``, which steps each statement to its end
        (a pragma such as ``incremental_vacuum`` does its work one step at a time)."""
        conn = await self._connection()
        assert self._lock is not None
        try:
            async with self._lock:
                await conn.executescript(script)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def _fetch_event_rows(self, select: str, params: Sequence[object]) -> list[EventRow]:
        """The ``(id, event)`` rows of ``select``, oldest first, fetched as ONE row.

        group_concat folds them into two strings (see _fetch for why). Stored events are
        ASCII JSON with control characters escaped, so the record separator (0x1E)
        never occurs inside one.
        """
        rows = await self._fetch(
            f"SELECT group_concat(id), group_concat(event, char(30)) FROM ({select})",
            params,
        )
        ids, events = rows[0]
        if ids is None:
            return []
        pairs = sorted(zip(map(int, ids.split(",")), events.split(_SEPARATOR), strict=True))
        return [EventRow(row_id, raw=raw) for row_id, raw in pairs]

    def _error(self, exc: sqlite3.Error) -> StorageError:
        if is_busy(exc):
            return StorageError(
                f"SQLite storage {self.path} stayed locked by another connection for "
                f"more than {self._busy_timeout}s: {exc}"
            )
        return StorageError(f"SQLite storage {self.path} failed: {exc}")
