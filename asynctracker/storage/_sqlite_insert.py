"""Where a SQLiteStorage insert is committed: the one decision (docs/design.md's table).

One event from a caller alone is committed **inline** on its own thread by an INSERT
that never waits for a lock (``busy_timeout=0``, no automatic checkpoint, the bound
checked in the same statement, a watchdog for a slow disk; a plain thread may wait a
little for another thread's inline insert, a loop never). Anything else joins a
**group commit**, each caller's bound applied in order: gathered for a few turns on the
callers' event loop and committed there in one statement when small (up to 64 rows),
else on the worker. A caller that gave up before its group was taken is skipped; one
cancelled later is stored and counted all the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .._encoded import encode_event
from .._rowstore import ONE, Bound, Listener, Stored, apply_bound
from .._threads import call_on_loop
from ._forksafe import ForkSafeConnection, is_busy
from ._sqlite_db import WAL_SIZE_LIMIT, Database, chunks, transaction
from ._sqlite_schema import COUNT, EVICTABLE, delete, insert_rows

__all__ = ["Inserts"]

_T = TypeVar("_T")

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
_GATHER_TURNS = 3  # loop turns a group waits, at most, for callers about to insert
_GROUP_ROWS = 64  # a group this small is committed on its callers' loop
_THREAD_WAIT = 0.01  # a plain thread waits this long for another's inline insert
_ROWS_PER_STATEMENT = 499  # two parameters a row, under SQLite's 999


@dataclass(slots=True)
class _Entry:
    """One caller's rows waiting for the group commit."""

    raws: list[str]
    dest: int | None
    bound: Bound | None
    listener: Listener
    reply: asyncio.Future[Stored] | concurrent.futures.Future[Stored]


def _store_at_once(conn: ForkSafeConnection, entries: list[_Entry]) -> list[Stored] | None:
    """Every entry's rows in one statement when they share a destination and bound and
    all fit under it; else None, and nothing stored (``_store_group``'s turn)."""
    first = entries[0]
    if any(entry.dest != first.dest or entry.bound != first.bound for entry in entries):
        return None
    values = [value for entry in entries for raw in entry.raws for value in (raw, entry.dest)]
    limit = None if first.bound is None else first.bound.max_events
    if len(values) > 2 * _ROWS_PER_STATEMENT or not insert_rows(conn, values, limit):
        return None
    return [Stored(len(entry.raws)) for entry in entries]


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
            oldest = f"DELETE FROM events WHERE id IN ({EVICTABLE} LIMIT ?)"
            delete(conn, [(oldest, (entry.dest, outcome.evicted))])
        if outcome.stored:
            values += [value for raw in entry.raws for value in (raw, entry.dest)]
        count += outcome.stored - outcome.evicted
        outcomes.append(outcome)
    for chunk in chunks(values, 2 * _ROWS_PER_STATEMENT):
        insert_rows(conn, chunk, None)
    return outcomes


def _store(conn: ForkSafeConnection, entries: list[_Entry]) -> list[Stored]:
    """On the worker: at once if it can be, else in a transaction."""
    with conn.in_gate():
        done = _store_at_once(conn, entries)
    return done if done is not None else transaction(conn, lambda c: _store_group(c, entries))


def _settle(settled: list[tuple[_Entry, Stored | BaseException]]) -> None:
    """Count, then wake each caller that still waits (on the callers' loop, or on the
    worker for a blocked thread, whose listener is thread-safe). Plain stores are told
    to each listener once, summed."""
    plain: dict[Listener, int] = {}
    for entry, outcome in settled:
        if isinstance(outcome, BaseException):
            continue
        if outcome.evicted or outcome.refused:
            entry.listener(outcome)
        else:
            plain[entry.listener] = plain.get(entry.listener, 0) + outcome.stored
    for listener, stored in plain.items():
        listener(Stored(stored))
    for entry, outcome in settled:
        reply = entry.reply
        if not reply.done():
            if isinstance(outcome, BaseException):
                reply.set_exception(outcome)
            else:
                reply.set_result(outcome)


def _answer(
    entries: list[_Entry],
    outcomes: list[Stored] | BaseException,
    here: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Each entry's outcome, one wake-up per event loop (``here``: this thread's)."""
    by_loop: dict[asyncio.AbstractEventLoop | None, list[tuple[_Entry, Stored | BaseException]]]
    by_loop = {}
    for index, entry in enumerate(entries):
        outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[index]
        loop = entry.reply.get_loop() if isinstance(entry.reply, asyncio.Future) else None
        by_loop.setdefault(loop, []).append((entry, outcome))
    for loop, settled in by_loop.items():
        if loop is None or loop is here:
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

    def insert(
        self, raw: str, dest: int | None, bound: Bound | None, wait: float = 0.0
    ) -> bool | None:
        """Commit one row now: True, False (the queue is full), or None (in use, locked,
        failed: the worker's turn)."""
        limit = None if bound is None else bound.max_events
        return self._run(lambda conn: insert_rows(conn, (raw, dest), limit), 1, wait)

    def group(self, entries: list[_Entry], rows: int) -> list[Stored] | None:
        """Commit a small group now, in one statement: the outcomes, or None (paused,
        in use, locked, over the bound, failed: the worker's turn)."""
        if time.perf_counter() < self._paused_until:
            return None
        return self._run(lambda conn: _store_at_once(conn, entries), rows)

    def _run(
        self, work: Callable[[ForkSafeConnection], _T], rows: int, wait: float = 0.0
    ) -> _T | None:
        """``work(conn)`` now, under the watchdog: its result, or None (in use, locked,
        or any other error: logged, and inline writes pause)."""
        gate = self.conn.in_gate()
        if not (gate.acquire(timeout=wait) if wait else gate.acquire(blocking=False)):
            return None
        try:
            started = time.perf_counter()
            done = work(self.conn)
        except sqlite3.Error as exc:
            if not is_busy(exc):
                logger.warning("inline SQLite insert failed, using the thread: %s", exc)
                self._paused_until = time.perf_counter() + _PAUSE
            return None
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
        self.since_checkpoint += rows
        return done


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
        self._turn = 0  # which write of the pending entries is the current one
        self._gathering: asyncio.AbstractEventLoop | None = None
        self._checkpointing = False

    def opened(self) -> None:
        """On the worker, once the file is open: the inline connection, if allowed."""
        if self._inline_writes and self._inline is None:
            try:
                self._inline = _Inline(self._db.path, self._db.synchronous)
            except sqlite3.Error as exc:
                logger.warning("SQLite inserts will run on a thread only: %s", exc)

    def close(self) -> None:
        """On the worker: write what is pending, close the inline connection."""
        if self._pending:
            self._write_pending()
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
        if len(payloads) == 1:
            raws = [encode_event(payloads[0])]
            if not self._scheduled and not self._checkpointing:
                done = self._try_inline(raws[0], dest, bound, loop)
                if done is not None:
                    listener(done)
                    return done
        else:
            raws = [encode_event(payload) for payload in payloads]
        if loop is not None:
            future: asyncio.Future[Stored] = loop.create_future()
            self._queue(_Entry(raws, dest, bound, listener, future), loop)
            return future
        reply: concurrent.futures.Future[Stored] = concurrent.futures.Future()
        self._queue(_Entry(raws, dest, bound, listener, reply), None)
        return reply.result()

    def _try_inline(
        self,
        raw: str,
        dest: int | None,
        bound: Bound | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Stored | None:
        inline = self._inline
        if inline is None or not inline.alone(loop):
            return None
        done = inline.insert(raw, dest, bound, 0.0 if loop is not None else _THREAD_WAIT)
        if done:
            if inline.since_checkpoint >= _CHECKPOINT_EVERY:
                inline.since_checkpoint = 0
                self._checkpointing = True
                self._db.worker.submit(self._checkpoint)
            return ONE
        if done is False and bound is not None and bound.overflow != "drop_oldest":
            return Stored(0, refused=1, refused_by=bound.overflow)
        return None  # locked, failed, or room to make: the worker's turn

    def _queue(self, entry: _Entry, loop: asyncio.AbstractEventLoop | None) -> None:
        """Join the next group: gathered on the caller's loop when there is an inline
        connection (and no gathering loop stopped meanwhile), else by the worker."""
        with self._lock:
            self._pending.append(entry)
            if self._scheduled:
                gathering = self._gathering
                if gathering is None or gathering is loop or gathering.is_running():
                    return
            self._scheduled = True
            self._turn += 1
            turn = self._turn
            self._gathering = loop if loop is not None and self._inline is not None else None
        if self._gathering is not None and loop is not None:
            loop.call_soon(self._gather, loop, turn, 0, 1)
        else:
            self._db.worker.submit(self._write_pending)

    def _take(self, turn: int | None) -> list[_Entry] | None:
        """The pending entries, for write ``turn`` (None: the worker's, always current);
        None when another write has taken over."""
        with self._lock:
            if turn is not None and turn != self._turn:
                return None
            entries, self._pending = self._pending, []
            self._scheduled = False
            self._gathering = None
        return [entry for entry in entries if not entry.reply.cancelled()]

    def _gather(self, loop: asyncio.AbstractEventLoop, turn: int, turns: int, seen: int) -> None:
        """On the callers' loop: wait while callers keep joining (a few turns), then
        commit a small group here, inline; a larger one, or one that finds the file
        locked, goes to the worker, ahead of anything queued since."""
        waiting = len(self._pending)
        if waiting != seen and turns < _GATHER_TURNS:
            loop.call_soon(self._gather, loop, turn, turns + 1, waiting)
            return
        entries = self._take(turn)
        if not entries:
            return
        rows = sum(len(entry.raws) for entry in entries)
        inline = self._inline
        outcomes = None
        if inline is not None and not self._checkpointing and rows <= _GROUP_ROWS:
            outcomes = inline.group(entries, rows)
        if outcomes is not None:
            _answer(entries, outcomes, loop)
            return
        with self._lock:
            self._pending[:0] = entries
            self._scheduled = True
        self._db.worker.submit(self._write_pending)

    def _write_pending(self) -> None:
        """On the worker: every entry queued so far, in one transaction."""
        entries = self._take(None)
        if entries:
            outcomes: list[Stored] | BaseException
            try:
                outcomes = self._db.attempt(lambda conn: _store(conn, entries))
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
