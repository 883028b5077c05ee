"""What the local collector remembers: received events, in memory and optionally in SQLite.

Memory is the source of truth while the collector runs (tests read it synchronously);
SQLite only makes a long-running ``asynctracker collector`` survive restarts. Writes go
through one background task that batches whatever has queued up into a single
transaction, so the request path never waits for the disk and 100k events/s do not turn
into 100k commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import aiosqlite

from .._validate import decode_event, validate_event

logger = logging.getLogger("asynctracker")

__all__ = ["EventLog", "ReceivedEvent"]


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One event as the collector accepted it.

    ``payload`` is exactly what arrived (including ``stm``). Its values are strings for
    any event a correct tracker sends; an event that carried something else keeps it, and
    ``errors`` says so.
    """

    payload: dict[str, str]
    method: Literal["GET", "POST"]
    errors: tuple[str, ...]
    received_at: float

    @classmethod
    def check(
        cls,
        payload: dict[str, str],
        method: Literal["GET", "POST"],
        *,
        extra_errors: Iterable[str] = (),
        received_at: float | None = None,
    ) -> ReceivedEvent:
        """Validate ``payload`` and wrap it; ``extra_errors`` carry body-level problems."""
        errors = (*validate_event(payload), *extra_errors)
        return cls(payload, method, errors, time.time() if received_at is None else received_at)

    @property
    def valid(self) -> bool:
        """True when the event follows the tracker protocol."""
        return not self.errors

    @property
    def decoded(self) -> dict[str, object]:
        """The payload with ``ue_px``/``cx`` & co. decoded; computed on demand, as it is
        only needed by people looking at events, not by the hot path."""
        return decode_event(self.payload)

    def to_json(self) -> dict[str, object]:
        """The shape served by ``GET /events``."""
        return {
            "payload": self.payload,
            "decoded": self.decoded,
            "errors": list(self.errors),
            "method": self.method,
            "received_at": self.received_at,
        }


#: A queued write: a batch to insert, or ``None`` meaning "delete everything".
_Op: TypeAlias = "list[ReceivedEvent] | None"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    method TEXT NOT NULL,
    errors TEXT NOT NULL,
    received_at REAL NOT NULL
)
"""


class EventLog:
    """Accepted events in arrival order, with waiters and optional SQLite persistence."""

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        on_event: Callable[[ReceivedEvent], None] | None = None,
    ) -> None:
        self.events: list[ReceivedEvent] = []
        self._db_path = db_path
        self._on_event = on_event
        self._db: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # A reset while the collector is stopped must still empty the table on next start.
        self._clear_on_open = False

    async def open(self) -> None:
        """Connect to SQLite (if configured) and load what earlier runs stored."""
        if self._db_path is None:
            return
        db = await aiosqlite.connect(os.fspath(self._db_path))
        try:
            await db.execute(_SCHEMA)
            if self._clear_on_open:
                await db.execute("DELETE FROM received_events")
                self._clear_on_open = False
            await db.commit()
            async with db.execute(
                "SELECT payload, method, errors, received_at FROM received_events ORDER BY id"
            ) as cursor:
                rows = await cursor.fetchall()
        except BaseException:
            await db.close()
            raise
        self.events = [
            ReceivedEvent(json.loads(p), m, tuple(json.loads(e)), at) for p, m, e, at in rows
        ]
        self._db = db
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(db), name="collector-sqlite")
        self._notify()

    async def close(self) -> None:
        """Write everything still queued, then close the database."""
        if self._writer is None or self._db is None:
            return
        await self._queue.join()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        await self._db.close()
        self._writer = self._db = None

    def add(self, events: list[ReceivedEvent]) -> None:
        """Record accepted events: memory now, disk soon, then callbacks and waiters."""
        if not events:
            return
        self.events.extend(events)
        if self._writer is not None:
            self._queue.put_nowait(events)
        if self._on_event is not None:
            for event in events:
                try:
                    self._on_event(event)
                except Exception:
                    logger.exception("collector on_event callback failed")
        self._notify()

    def clear(self) -> None:
        """Forget every event, on disk too (ordered after any pending writes)."""
        self.events = []
        if self._writer is not None:
            self._queue.put_nowait(None)
        elif self._db_path is not None:
            self._clear_on_open = True

    async def wait_for(self, count: int, timeout: float) -> list[ReceivedEvent]:
        """Wait until at least ``count`` events have arrived; raise ``TimeoutError``."""
        if len(self.events) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (count, future)
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
                raise TimeoutError(
                    f"collector received {len(self.events)} of {count} events in {timeout}s"
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return list(self.events)

    def _notify(self) -> None:
        if not self._waiters:
            return
        have = len(self.events)
        for count, future in self._waiters:
            if count <= have and not future.done():
                future.set_result(None)

    async def _write_loop(self, db: aiosqlite.Connection) -> None:
        """Drain the queue in batches: one transaction for whatever piled up meanwhile."""
        while True:
            ops = [await self._queue.get()]
            while not self._queue.empty():
                ops.append(self._queue.get_nowait())
            try:
                await self._apply(db, ops)
            except Exception:
                logger.exception("collector could not persist %d operations", len(ops))
            finally:
                for _ in ops:
                    self._queue.task_done()

    @staticmethod
    async def _apply(db: aiosqlite.Connection, ops: list[_Op]) -> None:
        rows: list[tuple[str, str, str, float]] = []

        async def insert_pending() -> None:
            if rows:
                await db.executemany(
                    "INSERT INTO received_events (payload, method, errors, received_at)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
                rows.clear()

        for op in ops:
            if op is None:
                await insert_pending()
                await db.execute("DELETE FROM received_events")
            else:
                rows.extend(
                    (
                        json.dumps(ev.payload),
                        ev.method,
                        json.dumps(ev.errors) if ev.errors else "[]",
                        ev.received_at,
                    )
                    for ev in op
                )
        await insert_pending()
        await db.commit()
