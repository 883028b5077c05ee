"""Where a SQLiteStorage insert is committed: the one decision, and both ways to do it.

The rule (docs/design.md draws it as a table): one event from a caller alone, when the
inline connection may be used, is committed **inline**, on the caller's own thread, by
one INSERT that can never wait; everything else (concurrent callers, several rows, a
full queue under ``drop_oldest``, a locked file, ``synchronous="FULL"``, a slow disk)
joins the **group commit** on the storage's worker thread.

* Inline: a second connection with ``busy_timeout=0`` (a held lock fails at once,
  nothing committed) and no automatic checkpoint (the worker checkpoints every
  ``_CHECKPOINT_EVERY`` inline commits, and inserts go to the worker meanwhile). A
  temporary trigger on that connection refuses the row when the queue is full, in the
  INSERT itself: the count is read under the write lock. Every statement is timed: a
  moving average above ``_SLOW_AVERAGE`` or one statement above ``_SLOW_STATEMENT`` (a
  slow disk) sends inserts to the worker for ``_PAUSE`` seconds. On the event loop, a
  second task inserting in the same loop turn marks the next ``_CROWDED_TURNS`` turns
  crowded: concurrent callers share a transaction written on the other core instead.
* Group commit: callers queue their rows; the worker takes every entry queued by the
  time it is free and writes them in one transaction, applying each caller's bound in
  order against the count it reads in that transaction (evicting the oldest rows not
  being sent under ``drop_oldest``). A caller that gave up (cancelled) before the worker
  took its entry is skipped; one cancelled later is stored, and counted all the same.

Either way the caller's listener gets the outcome in the step that commits it (inline:
at once; group: on the listener's event loop, before the caller's future resolves).
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

from .._threads import call_on_loop
from ._forksafe import ForkSafeConnection, is_busy
from ._rowstore import ONE, Bound, Listener, Stored, apply_bound
from ._sqlite_db import WAL_SIZE_LIMIT, Database, chunks, transaction
from ._sqlite_schema import COUNT
from .base import encode_event

__all__ = ["Inserts"]

logger = logging.getLogger("asynctracker")

# One statement slower than this (seconds), or a moving average above _SLOW_AVERAGE,
# and inserts go to the worker for _PAUSE seconds. Single statements of tens of ms are
# the thread waiting for the GIL or the CPU on a busy machine, not the disk: they count
# in the average, and only a real stall trips the watchdog alone.
_SLOW_STATEMENT = 0.1
_SLOW_AVERAGE = 0.002
_AVERAGE_WEIGHT = 0.01
_PAUSE = 2.0
_CHECKPOINT_EVERY = 2000
_CROWDED_TURNS = 8
_FULL = "asynctracker: queue full"
_UNBOUNDED = 2**62
_ROWS_PER_STATEMENT = 499  # two parameters a row, under SQLite's 999
_EVICTABLE = "SELECT id FROM events WHERE owner IS NULL AND (dest IS NULL OR dest = ?) ORDER BY id"


def _insert_sql(rows: int) -> str:
    return "INSERT INTO events(event, dest) VALUES " + ",".join(["(?, ?)"] * rows)


@dataclass(slots=True)
class _Entry:
    """One caller's rows waiting for the group commit."""

    raws: list[str]
    dest: int | None
    bound: Bound | None
    listener: Listener
    loop: asyncio.AbstractEventLoop | None  # where the listener runs (None: any thread)
    reply: asyncio.Future[Stored] | concurrent.futures.Future[Stored]

    def gave_up(self) -> bool:
        return self.reply.cancelled()


def _store_group(conn: ForkSafeConnection, entries: list[_Entry]) -> list[Stored]:
    """On the worker, in one transaction: each entry under its bound, in order, then
    every stored row in as few statements as the parameter limit allows."""
    (count,) = conn.execute(COUNT).fetchone()
    outcomes = []
    values: list[object] = []
    for entry in entries:
        rows = len(entry.raws)
        bound = entry.bound
        evictable = 0
        if bound is not None and count + rows > bound.max_events:
            need = count + rows - bound.max_events
            if bound.overflow == "drop_oldest":
                (evictable,) = conn.execute(
                    f"SELECT count(*) FROM ({_EVICTABLE} LIMIT ?)", (entry.dest, need)
                ).fetchone()
        outcome = apply_bound(count, rows, bound, evictable)
        if outcome.evicted:
            conn.execute(
                f"DELETE FROM events WHERE id IN ({_EVICTABLE} LIMIT ?)",
                (entry.dest, outcome.evicted),
            )
        if outcome.stored:
            values += [value for raw in entry.raws for value in (raw, entry.dest)]
        count += outcome.stored - outcome.evicted
        outcomes.append(outcome)
    for chunk in chunks(values, 2 * _ROWS_PER_STATEMENT):
        conn.execute(_insert_sql(len(chunk) // 2), chunk)
    return outcomes


def _settle(settled: list[tuple[_Entry, Stored | BaseException]]) -> None:
    """On a listener's loop: count, then wake the caller (if it still waits)."""
    for entry, outcome in settled:
        reply = entry.reply
        assert isinstance(reply, asyncio.Future)
        if isinstance(outcome, BaseException):
            if not reply.done():
                reply.set_exception(outcome)
            continue
        entry.listener(outcome)
        if not reply.done():
            reply.set_result(outcome)


def _answer(entries: list[_Entry], outcomes: list[Stored] | BaseException) -> None:
    """On the worker: hand each entry its outcome; one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Entry, Stored | BaseException]]] = {}
    for index, entry in enumerate(entries):
        outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[index]
        reply = entry.reply
        if isinstance(reply, asyncio.Future):
            by_loop.setdefault(reply.get_loop(), []).append((entry, outcome))
        elif reply.set_running_or_notify_cancel():  # a thread blocks on it (sync API)
            if isinstance(outcome, BaseException):
                reply.set_exception(outcome)
            else:
                entry.listener(outcome)  # thread-safe (see insert_blocking)
                reply.set_result(outcome)
    for loop, settled in by_loop.items():
        call_on_loop(loop, _settle, settled)


class _Inline:
    """The connection used on the callers' own threads (see the module)."""

    def __init__(self, conn: ForkSafeConnection) -> None:
        self.conn = conn
        self._bound = -1
        self._average = 0.0
        self._paused_until = 0.0
        self._since_checkpoint = 0
        self._turn_task: asyncio.Task[object] | None = None
        self._crowded = 0

    @classmethod
    def open(cls, path: Path, synchronous: str) -> _Inline:
        """Open the inline connection (the file exists and is set up). Blocking."""
        conn = ForkSafeConnection(path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            conn.script(
                f"PRAGMA synchronous={synchronous}; PRAGMA wal_autocheckpoint=0; "
                f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
            )
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def alone(self, loop: asyncio.AbstractEventLoop | None) -> bool:
        """May this caller insert inline now? On a loop: not when another task inserted
        in this loop turn or a few turns before. Never while the watchdog pauses."""
        if loop is not None:
            task = asyncio.current_task(loop)
            owner = self._turn_task
            if owner is None:
                self._turn_task = task
                loop.call_soon(self._new_turn)
            elif owner is not task:
                self._crowded = _CROWDED_TURNS
                return False
            if self._crowded:
                return False
        return time.perf_counter() >= self._paused_until

    def _new_turn(self) -> None:
        self._turn_task = None
        if self._crowded:
            self._crowded -= 1

    def insert(self, raw: str, dest: int | None, bound: Bound | None) -> bool | str | None:
        """Commit one row now: True once committed; ``_FULL`` when the queue is full;
        None when the connection is in use or another holds the write lock; False on
        any other error (logged; the worker's attempt then reports it)."""
        gate = self.conn.in_gate()
        if not gate.acquire(blocking=False):
            return None
        try:
            limit = _UNBOUNDED if bound is None else bound.max_events
            if limit != self._bound:
                self._set_bound(limit)
            started = time.perf_counter()
            self.conn.execute("INSERT INTO events(event, dest) VALUES (?, ?)", (raw, dest))
        except sqlite3.IntegrityError as exc:
            if str(exc) == _FULL:
                return _FULL
            return self._failed(exc)
        except sqlite3.Error as exc:
            return None if is_busy(exc) else self._failed(exc)
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
        self._since_checkpoint += 1
        return True

    def _set_bound(self, limit: int) -> None:
        """The temporary trigger that refuses a row when the queue holds ``limit``."""
        self.conn.execute("DROP TRIGGER IF EXISTS temp.asynctracker_bound")
        self.conn.execute(
            "CREATE TEMP TRIGGER asynctracker_bound BEFORE INSERT ON main.events "
            f"WHEN ({COUNT}) >= {int(limit)} BEGIN SELECT RAISE(ABORT, '{_FULL}'); END"
        )
        self._bound = limit

    def _failed(self, exc: sqlite3.Error) -> bool:
        logger.warning("inline SQLite insert failed, using the thread: %s", exc)
        self._paused_until = time.perf_counter() + _PAUSE
        return False

    def checkpoint_due(self) -> bool:
        if self._since_checkpoint < _CHECKPOINT_EVERY:
            return False
        self._since_checkpoint = 0
        return True


class Inserts:
    """A SQLiteStorage's inserts: the decision above, inline or group commit."""

    def __init__(self, db: Database, *, inline_writes: bool) -> None:
        self._db = db
        self._inline_writes = inline_writes and db.synchronous in ("OFF", "NORMAL")
        self._inline: _Inline | None = None
        self._lock = threading.Lock()
        self._pending: list[_Entry] = []
        self._scheduled = False
        self._checkpointing = False

    def opened(self) -> None:
        """On the worker, once the file is open: the inline connection, if allowed."""
        if self._inline_writes and self._inline is None:
            try:
                self._inline = _Inline.open(self._db.path, self._db.synchronous)
            except sqlite3.Error as exc:
                logger.warning("SQLite inserts will run on a thread only: %s", exc)

    def close(self) -> None:
        """On the worker: close the inline connection (pending entries were written)."""
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.conn.close()

    def forget(self) -> None:
        """In a forked child: the parent's connection and entries are the parent's."""
        self._inline = None
        self._pending = []
        self._scheduled = False
        self._checkpointing = False
        self._lock = threading.Lock()

    def insert(
        self,
        payloads: Sequence[Mapping[str, str]],
        dest: int | None,
        bound: Bound | None,
        listener: Listener,
        loop: asyncio.AbstractEventLoop,
    ) -> Stored | asyncio.Future[Stored]:
        """From the event loop: done inline (a Stored), or a future of the group's."""
        raws = [encode_event(payload) for payload in payloads]
        if len(raws) == 1:
            done = self._try_inline(raws[0], dest, bound, loop)
            if done is not None:
                listener(done)
                return done
        future: asyncio.Future[Stored] = loop.create_future()
        self._queue(_Entry(raws, dest, bound, listener, loop, future))
        return future

    def insert_blocking(
        self,
        payloads: Sequence[Mapping[str, str]],
        dest: int | None,
        bound: Bound | None,
        listener: Listener,
    ) -> Stored:
        """From any other thread (the sync API): the same decision; blocks until the
        rows are committed. ``listener`` must be thread-safe: it is called on the
        calling thread (inline) or on the storage's (group commit)."""
        raws = [encode_event(payload) for payload in payloads]
        if len(raws) == 1:
            done = self._try_inline(raws[0], dest, bound, None)
            if done is not None:
                listener(done)
                return done
        reply: concurrent.futures.Future[Stored] = concurrent.futures.Future()
        self._queue(_Entry(raws, dest, bound, listener, None, reply))
        return reply.result()

    def _try_inline(
        self,
        raw: str,
        dest: int | None,
        bound: Bound | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Stored | None:
        inline = self._inline
        if (
            inline is None
            or self._checkpointing
            or self._pending
            or self._scheduled
            or not inline.alone(loop)
        ):
            return None
        done = inline.insert(raw, dest, bound)
        if done is True:
            if inline.checkpoint_due():
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
        entries = [entry for entry in entries if not entry.gave_up()]
        if not entries:
            return
        outcomes: list[Stored] | BaseException
        try:
            outcomes = self._db.attempt(
                lambda conn: transaction(conn, lambda c: _store_group(c, entries))
            )
        except BaseException as exc:  # every caller of the group gets it
            outcomes = exc
        _answer(entries, outcomes)

    def _checkpoint(self) -> None:
        """On the worker: copy the WAL into the database (the inline connection never
        checkpoints); inline inserts wait meanwhile, so the WAL can be started over."""
        try:
            self._db.attempt(lambda conn: conn.rows("PRAGMA wal_checkpoint(PASSIVE)"))
        except Exception as exc:
            logger.debug("WAL checkpoint failed (retried later): %s", exc)
        finally:
            self._checkpointing = False
