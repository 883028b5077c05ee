"""What the local collector remembers: every event in SQLite, the newest also in memory.

SQLite (the ``db_path`` file, or a temporary file) holds every event, so memory stays
bounded however long ``asynctracker collector`` runs; the listings and filters of the
HTTP API are queries on it (:mod:`._db`, on aiosqlite). The newest events
(``memory_events`` of them) are also kept in memory, so that tests read
:attr:`EventLog.events` synchronously without touching the disk, and counts (total, good,
bad, per event type) are kept exact in memory as events arrive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, cast

from .._validate import decode_event, validate_event
from ._db import Database
from ._table import COLUMNS, Filters, Row

logger = logging.getLogger("asynctracker")

__all__ = ["EventLog", "ReceivedEvent", "Page"]


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


#: How many of the newest events :class:`EventLog` keeps in memory by default.
MEMORY_EVENTS = 10_000


def _from_row(row: Row) -> tuple[int, ReceivedEvent]:
    seq, payload, method, errors, received_at = row
    return seq, ReceivedEvent(
        json.loads(payload),
        cast('Literal["GET", "POST"]', method),
        tuple(json.loads(errors)),
        received_at,
    )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: how many events match in all, and these (with their seq)."""

    total: int
    items: list[tuple[int, ReceivedEvent]]


class EventLog:
    """Accepted events in arrival order: all in SQLite, the newest in memory, exact counts."""

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        on_event: Callable[[ReceivedEvent], None] | None = None,
        *,
        memory_events: int = MEMORY_EVENTS,
    ) -> None:
        self._db_path = None if db_path is None else os.fspath(db_path)
        self._on_event = on_event
        self._memory_events = memory_events
        self._recent: collections.deque[tuple[int, ReceivedEvent]] = collections.deque()
        self._seq = 0
        self.total = 0
        self.bad = 0
        self.by_type: collections.Counter[str] = collections.Counter()
        self._db: Database | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # A reset while the collector is stopped must still empty the table on next start.
        self._clear_on_open = False

    @property
    def path(self) -> str:
        """The SQLite file: ``db_path``, or a temporary one removed with this object."""
        if self._db_path is None:
            folder = tempfile.mkdtemp(prefix="asynctracker-collector-")
            weakref.finalize(self, _remove_folder, folder)
            self._db_path = os.path.join(folder, "events.db")
        return self._db_path

    @property
    def good(self) -> int:
        return self.total - self.bad

    async def open(self) -> None:
        """Open the database and load counts and the newest events it holds.

        Raises ``sqlite3.Error`` or ``OSError`` when the file cannot be used.
        """
        db = await Database.open(self.path, self._forget)
        try:
            if self._clear_on_open:
                db.clear()
                self._clear_on_open = False
            highest, types, validity = await db.summary()
            _, rows = await db.page(Filters(), limit=self._memory_events)
        except BaseException:
            await db.close()
            raise
        self._db = db
        self._seq = highest
        self.by_type = collections.Counter(types)
        self.total = validity["good"] + validity["bad"]
        self.bad = validity["bad"]
        self._recent = collections.deque(_from_row(row) for row in reversed(rows))
        self._notify()

    async def close(self) -> None:
        """Write everything still queued, then close the database. Idempotent."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    def add(self, events: list[ReceivedEvent]) -> None:
        """Record accepted events: memory now, disk soon, then callbacks and waiters."""
        if not events:
            return
        first = self._seq + 1
        self._seq += len(events)
        numbered = list(zip(range(first, self._seq + 1), events, strict=True))
        self._recent.extend(numbered)
        self.total += len(events)
        for event in events:
            self.by_type[str(event.payload.get("e", ""))] += 1
            if event.errors:
                self.bad += 1
        if self._db is not None:
            self._db.insert(
                [(seq, ev.payload, ev.method, ev.errors, ev.received_at) for seq, ev in numbered]
            )
        if self._on_event is not None:
            for event in events:
                try:
                    self._on_event(event)
                except Exception:
                    logger.exception("collector on_event callback failed")
        self._notify()

    def _forget(self, committed: int) -> None:
        """Events up to ``committed`` are on disk: drop the oldest in memory beyond the
        limit."""
        recent = self._recent
        while len(recent) > self._memory_events and recent[0][0] <= committed:
            recent.popleft()

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every event in arrival order; reads the file for those no longer in memory."""
        recent = [event for _, event in self._recent]
        if len(recent) == self.total:
            return recent
        first = self._recent[0][0] if self._recent else self._seq + 1
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM collector_events WHERE seq < ? ORDER BY seq", (first,)
            ).fetchall()
        return [event for _, event in map(_from_row, rows)] + recent

    def clear(self) -> None:
        """Forget every event, on disk too (ordered after any pending writes)."""
        self._recent.clear()
        self.total = self.bad = 0
        self.by_type.clear()
        if self._db is not None:
            self._db.clear()
        else:
            self._clear_on_open = True

    async def page(
        self, filters: Filters, *, limit: int, offset: int = 0, newest_first: bool = True
    ) -> Page:
        """One page of the events matching ``filters``, queried after every insert so far."""
        if self._db is None:
            raise RuntimeError("the collector is not running")
        total, rows = await self._db.page(
            filters, limit=limit, offset=offset, newest_first=newest_first
        )
        return Page(total, [_from_row(row) for row in rows])

    async def wait_for(self, count: int, timeout: float) -> list[ReceivedEvent]:
        """Wait until at least ``count`` events have arrived; raise ``TimeoutError``."""
        if self.total < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (count, future)
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
                raise TimeoutError(
                    f"collector received {self.total} of {count} events in {timeout}s"
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self.events

    def _notify(self) -> None:
        if not self._waiters:
            return
        have = self.total
        for count, future in self._waiters:
            if count <= have and not future.done():
                future.set_result(None)


def _remove_folder(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
