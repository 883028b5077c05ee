"""SQLiteStorage: the durable default. Events survive restarts, crashes and ``kill -9``.

Three parts, one job each: ``Database`` (the file, its worker thread, its statements),
``Inserts`` (where an insert is committed, under the queue bound) and ``Claims`` (rows
claimed for sending, so processes can share a file). Nothing here is bound to an event
loop: any loop, or plain threads (the sync API), in one process; a forked child opens
its own connections. WAL with ``synchronous="NORMAL"``: a commit survives the process
being killed; ``"FULL"`` survives power loss too, an fsync per commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import _process
from .._rowstore import Bound, Listener, RowStore, Stored, ignore
from ..exceptions import ClosedError, ConfigurationError, StorageError
from ._forksafe import ForkSafeConnection
from ._sqlite_claims import Claims, event_rows
from ._sqlite_db import MAX_PARAMS, Database, chunks, placeholders, transaction
from ._sqlite_insert import Inserts
from ._sqlite_schema import EVICTABLE
from .base import EventRow

__all__ = ["SQLiteStorage", "WaitingEvents"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

# Work factor of the keyed hash naming a destination in the file: a leaked file must
# not give away a collector password or API key cheaply.
_HASH_ROUNDS = 100_000


@dataclass(frozen=True, slots=True)
class WaitingEvents:
    """``events`` waiting in a file for ``collector`` (its URL without secrets), the
    destination ``number`` names there (``Emitter.adopt_events``, ``asynctracker queue``)."""

    number: int
    collector: str
    events: int


class SQLiteStorage(RowStore, builtin=True):
    """Durable storage in one SQLite file, opened (and created) on first use.

    Args:
        path: the file; its folder must exist. One name (no hard links); mount its
            folder, never the file alone.
        synchronous: ``"NORMAL"`` survives process crashes; ``"FULL"`` power loss too.
        busy_timeout: seconds to wait for another process's lock (then StorageError).
        claim_ttl: seconds after which rows claimed by a process that cannot be
            checked become sendable again.
        inline_writes: commit a lone caller's insert on its own thread, on a
            connection that never waits (``_sqlite_insert``); False, or ``"FULL"``:
            every statement on the storage's thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "events.db",
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 10.0,
        claim_ttl: float = 300.0,
        inline_writes: bool = True,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(
                f"synchronous must be 'OFF', 'NORMAL', 'FULL' or 'EXTRA', got {synchronous!r}"
            )
        if not busy_timeout > 0 or not claim_ttl > 0:
            raise ConfigurationError("busy_timeout and claim_ttl must be positive seconds")
        if not str(path):
            raise ConfigurationError("path must name a file")
        self.path = Path(path)
        self._db = Database(self.path, synchronous=synchronous, busy_timeout=busy_timeout)
        self._inserts = Inserts(self._db, inline_writes=bool(inline_writes))
        self._claims = Claims(self._db, claim_ttl)
        self._forks = _process.forks
        self._closed = False
        # The destination this storage's rows are for; None until an emitter binds it.
        self._dest: int | None = None

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def lost(self) -> bool:
        return self._db.lost()

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the file; called for you on first use. Raises
        StorageError when it cannot be opened or used, stays locked past busy_timeout,
        or has a newer layout; ClosedError after ``aclose()``."""
        if self._closed:
            raise ClosedError(f"{self!r} was closed")
        if self._forks != _process.forks:
            self._forks = _process.forks
            self._db.forget()
            self._inserts.forget()
            self._claims.forked()
        if not self._db.is_open:
            await self._db.open()
            await self._db.worker.call(self._inserts.opened)

    def _ready(self) -> bool:
        return not self._closed and self._forks == _process.forks and self._db.is_open

    async def aclose(self) -> None:
        """Release this storage's claims and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._forks != _process.forks or not self._db.is_open:
            self._db.worker.stop()  # a failed or never finished open
            return
        with contextlib.suppress(StorageError):  # else they expire, or we are seen dead
            await self._claims.release_all()
        await self._db.worker.call(self._inserts.close)
        await self._db.close()

    async def __aenter__(self) -> SQLiteStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- inserts -----------------------------------------------------------------------

    def insert(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored | Awaitable[Stored]:
        """The emitter's insert, under ``bound`` (see ``_sqlite_insert``)."""
        if not self._ready():
            return self._open_and_insert(payloads, bound, listener)
        loop = asyncio.get_running_loop()
        return self._inserts.insert(payloads, self._dest, bound, listener, loop)

    async def _open_and_insert(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored:
        await self.open()
        done = self.insert(payloads, bound, listener)
        return done if isinstance(done, Stored) else await done

    def insert_blocking(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored:
        """``insert`` from a plain thread (the sync API), once open: blocks until
        committed; ``listener`` must be thread-safe."""
        if not self._ready():
            raise StorageError(f"{self!r} is not open in this process")
        done = self._inserts.insert(payloads, self._dest, bound, listener, None)
        assert isinstance(done, Stored)  # a plain thread waits for the outcome
        return done

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event; returns True once it is committed to the file."""
        await self.add_event_rows([payload])
        return True

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """Store several events in one transaction: all of them or none."""
        if not payloads:
            return 0
        done = self.insert(payloads, None, ignore)
        return (done if isinstance(done, Stored) else await done).stored

    # -- the Storage protocol, and what the emitter uses besides ----------------------

    async def _run(self, sql: str, params: Sequence[object] = ()) -> tuple[list[Any], int]:
        await self.open()
        return await self._db.execute(sql, params)

    async def _deleted(self, statements: list[tuple[str, Sequence[object]]]) -> int:
        await self.open()
        deleted = await self._db.delete(statements)
        self._claims.deleted(deleted)
        return deleted

    async def delete_all_event_rows(self) -> int:
        """Delete every stored event, claimed ones too; return how many."""
        return await self._deleted([("DELETE FROM events", ())])

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        """Delete the events with these ids, claimed or not; return how many existed."""
        return await self._deleted(
            [
                (f"DELETE FROM events WHERE id IN ({placeholders(len(chunk))})", chunk)
                for chunk in chunks(list(ids), MAX_PARAMS)
            ]
        )

    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest unclaimed rows of this destination."""
        oldest = f"DELETE FROM events WHERE id IN ({EVICTABLE} LIMIT ?)"
        return await self._deleted([(oldest, (self._dest, max(count, 0)))])

    async def get_all_event_rows(self) -> list[EventRow]:
        """Every stored event, oldest first."""
        rows, _ = await self._run("SELECT id, event FROM events ORDER BY id")
        return [EventRow(row_id, raw=raw) for row_id, raw in rows]

    async def get_event_rows_within_range(self, event_range: int) -> list[EventRow]:
        """Up to ``event_range`` stored events, oldest first (claimed ones included)."""
        await self.open()
        select = "SELECT id, event FROM events ORDER BY id LIMIT ?"
        return await event_rows(self._db, select, (max(event_range, 0),))

    async def count(self) -> int:
        """Events waiting for this destination (and for none), claimed ones included;
        the queue bound counts every event in the file."""
        rows, _ = await self._run(
            "SELECT count(*) FROM events WHERE dest IS NULL OR dest = ?", (self._dest,)
        )
        return int(rows[0][0])

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        """Claim up to ``limit`` of the oldest unclaimed rows (``_sqlite_claims``)."""
        await self.open()
        return await self._claims.claim(limit, self._dest)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        """Give back claimed rows (their send failed); retried at the next claim."""
        await self.open()
        await self._claims.release(ids)

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        """Delete rows still claimed here (delivered or dropped); never sent again."""
        await self.open()
        return await self._claims.delete(ids)

    async def reclaim_abandoned_rows(self) -> int:
        """Release rows whose owner is dead or whose claim expired; how many."""
        await self.open()
        return await self._claims.reclaim_abandoned()

    # -- destinations ----------------------------------------------------------------------

    async def bind_destination(self, identity: str, shown: str, *, legacy: bool = False) -> None:
        """Store, claim and drop only this destination's rows (and rows of none) from
        now on: programs for different collectors, or tenants, may share a file. The
        file keeps a keyed hash of ``identity`` (endpoint, credentials, headers), and
        ``shown``. ``legacy``: take over an earlier version's rows for ``shown``."""
        await self.open()

        def bind(conn: ForkSafeConnection) -> int:
            (salt,) = conn.rows("SELECT salt FROM queue_state")[0][0]
            secret = identity.encode("utf-8", "surrogatepass")
            key = "key:" + hashlib.pbkdf2_hmac("sha256", secret, salt, _HASH_ROUNDS).hex()[:40]
            return transaction(conn, lambda c: _bind(c, key, shown, legacy))

        self._dest = await self._db.run(bind)

    async def destinations(self) -> list[WaitingEvents]:
        """Every destination events wait for in the file, this storage's first."""
        rows, _ = await self._run(
            "SELECT d.id, ifnull(d.shown, d.url), count(e.id) FROM destinations AS d "
            "JOIN events AS e ON e.dest = d.id GROUP BY d.id ORDER BY d.id != ?, d.id",
            (self._dest,),
        )
        return [WaitingEvents(int(n), str(shown), int(count)) for n, shown, count in rows]

    async def waiting_elsewhere(self) -> dict[str, tuple[str, int]]:
        waiting = await self.destinations()
        return {str(w.number): (w.collector, w.events) for w in waiting if w.number != self._dest}

    async def adopt_events(self, number: int) -> int:
        """Make destination ``number``'s waiting events this storage's; how many moved."""
        if self._dest is None:
            raise StorageError(f"{self!r} has no destination yet: open an emitter on it first")
        _, moved = await self._run(
            "UPDATE events SET dest = ? WHERE dest = ? AND owner IS NULL", (self._dest, number)
        )
        return moved

    async def export_events(self, number: int) -> list[EventRow]:
        """The events waiting for destination ``number``, oldest first (a copy)."""
        rows, _ = await self._run(
            "SELECT id, event FROM events WHERE dest = ? ORDER BY id", (number,)
        )
        return [EventRow(row_id, raw=raw) for row_id, raw in rows]


def _bind(conn: ForkSafeConnection, key: str, shown: str, legacy: bool) -> int:
    """In the binding transaction: this destination's number (made if new); an earlier
    version's rows for ``shown`` become its own when ``legacy``."""
    conn.execute("INSERT OR IGNORE INTO destinations(url, shown) VALUES (?, ?)", (key, shown))
    conn.execute("UPDATE destinations SET shown = ? WHERE url = ?", (shown, key))
    (number,) = conn.execute("SELECT id FROM destinations WHERE url = ?", (key,)).fetchone()
    if legacy:
        conn.execute(
            "UPDATE events SET dest = ? WHERE dest = (SELECT id FROM destinations WHERE url = ?)",
            (number, shown),
        )
    return int(number)
