"""Short inserts run on the event loop's own thread, on a connection that never waits.

A lone caller awaiting each ``track_*`` in turn paid, per event, two thread hops, an
asyncio lock and a group commit's wait for stragglers around an INSERT that takes a
fraction of any of them (see benchmarks/README.md). So SQLiteStorage keeps a second
sqlite3 connection, used on the loop's thread, for one-row inserts, set up so that the
loop can never wait on it:

* ``busy_timeout=0``: when another connection holds the write lock, the insert fails at
  once with SQLITE_BUSY, nothing committed. If the holder is the storage's own thread
  (a claim or delete in progress), the caller waits for that trip to end without
  blocking the loop and tries once more; otherwise, or if that fails too, the row goes
  to the thread. Never a retry loop on the loop.
* ``wal_autocheckpoint=0``: a commit here never copies the WAL into the database; the
  storage checkpoints from its thread (``checkpoint_due``).
* never with ``synchronous="FULL"`` or ``"EXTRA"``: those fsync on every commit.
* a watchdog: each statement is timed; a moving average above ``_SLOW_AVERAGE`` (a
  slow disk, the kernel throttling writeback) or one statement slower than
  ``_SLOW_STATEMENT`` sends inserts back to the thread for ``_PAUSE`` seconds.
* one caller at a time: when a second task inserts in the same loop turn, callers are
  concurrent and share a group commit (one transaction for many rows) instead, for the
  next few turns too. A group of up to ``_GROUP_ROWS`` rows is written here too, as
  one statement (``insert_group``): its callers' loop would otherwise only wait for the
  trip to the thread; larger groups, and any the file or the watchdog refuses, go to
  the thread.

The statement is a plain autocommit INSERT: when it returns, the row is committed, as
with the thread's transaction (WAL with ``synchronous=NORMAL`` survives the process
being killed). The connection is a ``ForkSafeConnection``, so a fork waits for it too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Sequence

from ._forksafe import ForkSafeConnection, is_busy

__all__ = ["InlineWriter", "insert_statement"]

logger = logging.getLogger("asynctracker")

# One statement slower than this (seconds), or a moving average above _SLOW_AVERAGE,
# and inserts go back to the thread for _PAUSE seconds. The time includes taking the
# GIL back after sqlite3_step (up to the 5 ms switch interval while another thread
# runs Python) and this thread being descheduled on a busy machine: single statements
# of tens of ms were common on the shared benchmark machine, with a healthy disk. So
# they count in the average, and only a real stall trips the watchdog alone.
_SLOW_STATEMENT = 0.1
_SLOW_AVERAGE = 0.002
_AVERAGE_WEIGHT = 0.01
_PAUSE = 2.0
# Inline commits between two checkpoints run from the storage's thread.
_CHECKPOINT_EVERY = 2000
_INSERT = "INSERT INTO events(event, dest) VALUES (?, ?)"


def insert_statement(raws: Sequence[str], dest: int | None) -> tuple[str, list[object]]:
    """One INSERT of these rows for collector ``dest``, and its parameters (the
    storage's thread writes larger groups with the same statement, in chunks)."""
    values = ",".join(["(?, ?)"] * len(raws))
    return f"INSERT INTO events(event, dest) VALUES {values}", [
        value for raw in raws for value in (raw, dest)
    ]


# Once two tasks insert in one loop turn, inserts go to the thread's group commit for
# this many turns: concurrent callers share one transaction written on the other core
# while the loop builds more events, where inline commits would run one by one on it.
_CROWDED_TURNS = 8
# The most rows a group commit writes inline: one statement of a fraction of a ms.
# 128 raised the loop's p99 lag with 100 producers by about a quarter; 64 did not
# (benchmarks/README.md, "Group commits inline").
_GROUP_ROWS = 64


class InlineWriter:
    """The loop-thread connection of one SQLiteStorage, and when it may be used.

    Made by ``open`` (blocking: run it in a worker thread); used only from the thread
    of the event loop the storage belongs to.
    """

    __slots__ = (
        "_average",
        "_conn",
        "_crowded",
        "_paused_until",
        "_since_checkpoint",
        "_turn_task",
    )

    def __init__(self, conn: ForkSafeConnection) -> None:
        self._conn = conn
        self._average = 0.0
        self._paused_until = 0.0
        self._since_checkpoint = 0
        self._turn_task: object = None
        self._crowded = 0  # loop turns left in which callers count as concurrent

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], synchronous: str, wal_size_limit: int
    ) -> InlineWriter:
        """Open the connection (the schema and WAL mode already exist). Blocking.

        ``wal_size_limit``: bytes the WAL is cut back to when this connection starts it
        over (it is often the first writer after a checkpoint)."""
        conn = ForkSafeConnection(path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={wal_size_limit}")
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        """Close the connection. Blocking only briefly (it is never the file's last)."""
        self._conn.close()

    def may_insert(self, loop: asyncio.AbstractEventLoop) -> bool:
        """May the running task insert inline now? Not when another task inserted in
        this loop turn or a few turns before (concurrent callers), nor while the
        watchdog has paused inline inserts."""
        task = asyncio.current_task(loop)
        owner = self._turn_task
        if owner is None:
            self._turn_task = task
            loop.call_soon(self._new_turn)
        elif owner is not task:
            self._crowded = _CROWDED_TURNS
            return False
        return not self._crowded and time.perf_counter() >= self._paused_until

    def insert(self, raw: str, dest: int | None) -> bool | None:
        """Commit one row now, on this thread: True once committed; None if another
        connection holds the write lock; False on any other error (logged; the
        thread's attempt then reports it). Nothing is committed unless True."""
        return self._run(_INSERT, (raw, dest), 1)

    def insert_group(self, raws: list[str], dest: int | None) -> bool | None:
        """Commit a group commit's rows now, in one statement (all or none), when the
        group is small and the watchdog allows it; as ``insert`` otherwise, and False
        without trying when it is not to be done inline. Concurrent callers woken
        together queue their rows in one turn: one short statement here costs the loop
        less than the trip to the thread it replaces, while the loop would only wait."""
        if len(raws) > _GROUP_ROWS or time.perf_counter() < self._paused_until:
            return False
        return self._run(*insert_statement(raws, dest), len(raws))

    def _run(self, sql: str, params: Sequence[object], rows: int) -> bool | None:
        started = time.perf_counter()
        try:
            self._conn.execute_only(sql, params)
        except sqlite3.Error as exc:
            if is_busy(exc):
                return None
            logger.warning("inline SQLite insert failed, using the thread: %s", exc)
            self._paused_until = time.perf_counter() + _PAUSE
            return False
        took = time.perf_counter() - started
        self._average += (took - self._average) * _AVERAGE_WEIGHT
        if took > _SLOW_STATEMENT or self._average > _SLOW_AVERAGE:
            logger.info(
                "SQLite inserts are slow (%.1f ms); running them on a thread for %.0fs",
                took * 1000,
                _PAUSE,
            )
            self._paused_until = started + took + _PAUSE
            self._average = 0.0
        self._since_checkpoint += rows
        return True

    def checkpoint_due(self) -> bool:
        """True once every ``_CHECKPOINT_EVERY`` inline commits (then counts afresh)."""
        if self._since_checkpoint < _CHECKPOINT_EVERY:
            return False
        self._since_checkpoint = 0
        return True

    def _new_turn(self) -> None:
        self._turn_task = None
        if self._crowded:
            self._crowded -= 1
