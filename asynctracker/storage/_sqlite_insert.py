"""Where a SQLiteStorage insert is committed: the one decision (docs/design.md's table).

One event from a caller alone is committed **inline** on its own thread by an INSERT
that never waits (``busy_timeout=0``, no automatic checkpoint, a temporary trigger
refusing it at the bound, a watchdog for a slow disk); anything else joins the **group
commit**: the worker writes every entry queued by the time it is free in one
transaction, each caller's bound applied in order. A caller that gave up before then is
skipped; one cancelled later is stored and counted all the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._encoded import encode_event
from .._threads import call_on_loop
from ._forksafe import ForkSafeConnection, is_busy
from ._rowstore import ONE, Bound, Listener, Stored, apply_bound
from ._sqlite_db import WAL_SIZE_LIMIT, Database, chunks, transaction
from ._sqlite_schema import COUNT, EVICTABLE

__all__ = ["Inserts"]

logger = logging.getLogger("asynctracker")

# One statement slower than this (seconds), or a moving average above _SLOW_AVERAGE,
# and inserts go to the worker for _PAUSE seconds (tens of ms once is the GIL or the
# CPU, not the disk).
_SLOW_STATEMENT = 0.1
_SLOW_AVERAGE = 0.002
_AVERAGE_WEIGHT = 0.01
_PAUSE = 2.0
_CHECKPOINT_EVERY = 2000
_CROWDED_TURNS = 8
_FULL = "asynctracker: queue full"
_ROWS_PER_STATEMENT = 499  # two parameters a row, under SQLite's 999


@dataclass(slots=True)
class _Entry:
    """One caller's rows waiting for the group commit."""

    raws: list[str]
    dest: int | None
    bound: Bound | None
    listener: Listener
    reply: asyncio.Future[Stored] | concurrent.futures.Future[Stored]


def _store_group(conn: ForkSafeConnection, entries: list[_Entry]) -> list[Stored]:
    """On the worker, in one transaction: each entry under its bound, in order."""
    (count,) = conn.execute(COUNT).fetchone()
    outcomes = []
    values: list[object] = []
    for entry in entries:
        rows, bound = len(entry.raws), entry.bound
        evictable = 0
        if (
            bound is not None
            and count + rows > bound.max_events
            and bound.overflow == "drop_oldest"
        ):
            need = count + rows - bound.max_events
            (evictable,) = conn.execute(
                f"SELECT count(*) FROM ({EVICTABLE} LIMIT ?)", (entry.dest, need)
            ).fetchone()
        outcome = apply_bound(count, rows, bound, evictable)
        if outcome.evicted:
            conn.execute(
                f"DELETE FROM events WHERE id IN ({EVICTABLE} LIMIT ?)",
                (entry.dest, outcome.evicted),
            )
        if outcome.stored:
            values += [value for raw in entry.raws for value in (raw, entry.dest)]
        count += outcome.stored - outcome.evicted
        outcomes.append(outcome)
    for chunk in chunks(values, 2 * _ROWS_PER_STATEMENT):
        rows_sql = ",".join(["(?, ?)"] * (len(chunk) // 2))
        conn.execute(f"INSERT INTO events(event, dest) VALUES {rows_sql}", chunk)
    return outcomes


def _settle(settled: list[tuple[_Entry, Stored | BaseException]]) -> None:
    """Count, then wake each caller that still waits (on the callers' loop, or on the
    worker for a blocked thread, whose listener is thread-safe)."""
    for entry, outcome in settled:
        reply = entry.reply
        if not isinstance(outcome, BaseException):
            entry.listener(outcome)
        if not reply.done():
            if isinstance(outcome, BaseException):
                reply.set_exception(outcome)
            else:
                reply.set_result(outcome)


def _answer(entries: list[_Entry], outcomes: list[Stored] | BaseException) -> None:
    """On the worker: each entry's outcome, one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop | None, list[tuple[_Entry, Stored | BaseException]]]
    by_loop = {}
    for index, entry in enumerate(entries):
        outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[index]
        loop = entry.reply.get_loop() if isinstance(entry.reply, asyncio.Future) else None
        by_loop.setdefault(loop, []).append((entry, outcome))
    for loop, settled in by_loop.items():
        if loop is None:
            _settle(settled)
        else:
            call_on_loop(loop, _settle, settled)


class _Inline:
    """The connection used on the callers' own threads (see the module)."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.conn = ForkSafeConnection(
            path, timeout=0, isolation_level=None, check_same_thread=False
        )
        try:
            self.conn.script(
                f"PRAGMA synchronous={synchronous}; PRAGMA wal_autocheckpoint=0; "
                f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
            )
        except BaseException:
            self.conn.close()
            raise
        self._bound: int | None = -1
        self._average = 0.0
        self._paused_until = 0.0
        self.since_checkpoint = 0
        self._turn_task: asyncio.Task[object] | None = None
        self._crowded = 0

    def alone(self, loop: asyncio.AbstractEventLoop | None) -> bool:
        """May this caller insert inline now? On a loop: not when another task inserted
        in this turn or a few turns before. Never while the watchdog pauses."""
        if loop is not None:
            task = asyncio.current_task(loop)
            if self._turn_task is None:
                self._turn_task = task
                loop.call_soon(self._new_turn)
            elif self._turn_task is not task:
                self._crowded = _CROWDED_TURNS
            if self._crowded:
                return False
        return time.perf_counter() >= self._paused_until

    def _new_turn(self) -> None:
        self._turn_task = None
        self._crowded = max(self._crowded - 1, 0)

    def insert(self, raw: str, dest: int | None, bound: Bound | None) -> bool | str | None:
        """Commit one row now: True, or ``_FULL`` (the queue is full), or None (in use,
        or locked), or False (any other error: logged, the worker then reports it)."""
        gate = self.conn.in_gate()
        if not gate.acquire(blocking=False):
            return None
        try:
            limit = None if bound is None else bound.max_events
            if limit != self._bound:  # the trigger that refuses a row at the bound
                self.conn.execute("DROP TRIGGER IF EXISTS temp.asynctracker_bound")
                if limit is not None:
                    self.conn.execute(
                        "CREATE TEMP TRIGGER asynctracker_bound BEFORE INSERT ON main.events "
                        f"WHEN ({COUNT}) >= {int(limit)} BEGIN SELECT RAISE(ABORT, '{_FULL}'); END"
                    )
                self._bound = limit
            started = time.perf_counter()
            self.conn.execute("INSERT INTO events(event, dest) VALUES (?, ?)", (raw, dest))
        except sqlite3.Error as exc:
            if str(exc) == _FULL:
                return _FULL
            if is_busy(exc):
                return None
            logger.warning("inline SQLite insert failed, using the thread: %s", exc)
            self._paused_until = time.perf_counter() + _PAUSE
            return False
        finally:
            gate.release()
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
        self.since_checkpoint += 1
        return True


class Inserts:
    """A SQLiteStorage's inserts: the decision above, inline or group commit."""

    def __init__(self, db: Database, *, inline_writes: bool) -> None:
        self._db = db
        self._inline_writes = inline_writes and db.synchronous in ("OFF", "NORMAL")
        self.forget()

    def forget(self) -> None:
        """Start empty (a forked child: the parent's connection and entries are its own)."""
        self._inline: _Inline | None = None
        self._lock = threading.Lock()
        self._pending: list[_Entry] = []
        self._scheduled = False
        self._checkpointing = False

    def opened(self) -> None:
        """On the worker, once the file is open: the inline connection, if allowed."""
        if self._inline_writes and self._inline is None:
            try:
                self._inline = _Inline(self._db.path, self._db.synchronous)
            except sqlite3.Error as exc:
                logger.warning("SQLite inserts will run on a thread only: %s", exc)

    def close(self) -> None:
        """On the worker: close the inline connection (pending entries were written)."""
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.conn.close()

    def insert(
        self,
        payloads: Sequence[Mapping[str, str]],
        dest: int | None,
        bound: Bound | None,
        listener: Listener,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Stored | asyncio.Future[Stored]:
        """Store ``payloads`` for ``dest``. From the event loop ``loop``: a Stored when
        done inline, else a future. From a plain thread (``loop`` None, the sync API):
        blocks until committed; ``listener`` must then be thread-safe."""
        raws = [encode_event(payload) for payload in payloads]
        if len(raws) == 1:
            done = self._try_inline(raws[0], dest, bound, loop)
            if done is not None:
                listener(done)
                return done
        if loop is not None:
            future: asyncio.Future[Stored] = loop.create_future()
            self._queue(_Entry(raws, dest, bound, listener, future))
            return future
        reply: concurrent.futures.Future[Stored] = concurrent.futures.Future()
        self._queue(_Entry(raws, dest, bound, listener, reply))
        return reply.result()

    def _try_inline(
        self,
        raw: str,
        dest: int | None,
        bound: Bound | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Stored | None:
        inline = self._inline
        if inline is None or self._checkpointing or self._scheduled or not inline.alone(loop):
            return None
        done = inline.insert(raw, dest, bound)
        if done is True:
            if inline.since_checkpoint >= _CHECKPOINT_EVERY:
                inline.since_checkpoint = 0
                self._checkpointing = True
                self._db.worker.submit(self._checkpoint)
            return ONE
        if done == _FULL and bound is not None and bound.overflow != "drop_oldest":
            return Stored(0, refused=1, refused_by=bound.overflow)
        return None  # locked, failed, or room to make: the worker's turn

    def _queue(self, entry: _Entry) -> None:
        with self._lock:
            self._pending.append(entry)
            if self._scheduled:
                return
            self._scheduled = True
        self._db.worker.submit(self._write_pending)

    def _write_pending(self) -> None:
        """On the worker: every entry queued so far, in one transaction."""
        with self._lock:
            entries, self._pending = self._pending, []
            self._scheduled = False
        entries = [entry for entry in entries if not entry.reply.cancelled()]
        if entries:
            outcomes: list[Stored] | BaseException
            try:
                outcomes = self._db.attempt(
                    lambda conn: transaction(conn, lambda c: _store_group(c, entries))
                )
            except BaseException as exc:  # every caller of the group gets it
                outcomes = exc
            _answer(entries, outcomes)

    def _checkpoint(self) -> None:
        """On the worker: copy the WAL into the database (inline inserts wait, so that
        the WAL can be started over)."""
        try:
            self._db.attempt(lambda conn: conn.rows("PRAGMA wal_checkpoint(PASSIVE)"))
        except Exception as exc:
            logger.debug("WAL checkpoint failed (retried later): %s", exc)
        finally:
            self._checkpointing = False
