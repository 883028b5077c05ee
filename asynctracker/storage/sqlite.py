"""SQLiteStorage: the durable default. Events survive restarts, crashes and ``kill -9``.

It is made of three parts, each with one job:

* ``_sqlite_db.Database``: the file, its worker thread and its statements;
* ``_sqlite_insert.Inserts``: where an insert is committed (inline or group commit),
  under the queue bound;
* ``_sqlite_claims.Claims``: rows claimed for sending, so several processes can share
  one file without sending a row twice.

WAL journal with ``synchronous=NORMAL`` by default: a committed event survives the
process being killed (the WAL is in the OS page cache); only an OS crash or power loss
can lose the last commits. ``synchronous="FULL"`` closes that window at the cost of an
fsync per commit. Nothing here is bound to an event loop: the storage works from any
loop, and from other threads (the sync API), in one process at a time; a forked child
opens its own connections.
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
from ..exceptions import ClosedError, ConfigurationError, StorageError
from ._forksafe import ForkSafeConnection
from ._rowstore import Bound, Listener, RowStore, Stored
from ._sqlite_claims import Claims, event_rows
from ._sqlite_db import MAX_PARAMS, Database, chunks, placeholders, transaction
from ._sqlite_insert import Inserts
from .base import EventRow

__all__ = ["SQLiteStorage", "WaitingEvents"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

# Work factor of the keyed hash that names a destination in the file: a file that
# leaks must not give away a collector password or API key cheaply.
_HASH_ROUNDS = 100_000


def _ignore(outcome: Stored) -> None:
    """The listener of inserts made outside an emitter: nothing counts them."""


@dataclass(frozen=True, slots=True)
class WaitingEvents:
    """Events in a file waiting for a destination: ``number`` names it in this file
    (for ``Emitter.adopt_events`` and ``asynctracker queue``), ``collector`` is its URL
    without secrets, ``events`` how many wait."""

    number: int
    collector: str
    events: int


class SQLiteStorage(RowStore, builtin=True):
    """Durable storage in one SQLite file (created on first use).

    Args:
        path: the database file. Its folder must exist and be writable. Give it one
            name (no hard links), and mount its folder, never the file alone.
        synchronous: SQLite's ``synchronous`` level. ``"NORMAL"`` (default) survives
            process crashes; ``"FULL"`` also survives power loss, slower.
        busy_timeout: seconds to wait for another process's lock before a call fails
            with StorageError.
        claim_ttl: seconds after which rows claimed by a process that cannot be
            checked become sendable again.
        inline_writes: commit a lone caller's insert on its own thread, on a
            connection that never waits for a lock (see ``_sqlite_insert``); ``False``
            runs every statement on the storage's thread. Ignored (always the thread)
            with ``synchronous="FULL"`` or ``"EXTRA"``, which fsync on every commit.

    The five Storage methods work on their own (the storage opens itself on first
    use); ``aclose()`` releases the file and the rows this storage had claimed.
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
        # The destination this storage's rows are for (see bind_destination); None
        # until an emitter binds it: rows are then stored for, and taken from, nobody's.
        self._dest: int | None = None

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    @property
    def location(self) -> str:
        """The database file, where undelivered events wait for the next emitter."""
        return str(self.path)

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the database. Called for you on first use.

        Several processes may open the same file at the same moment: lock contention
        is retried until busy_timeout. Raises StorageError when the file cannot be
        opened, is not a database, has a newer layout, or stays locked.
        """
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
        """Wait for pending inserts, release this storage's claims, close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._forks != _process.forks or not self._db.is_open:
            self._db.worker.stop()  # a failed or never finished open
            return
        # On failure the claims still come back: they expire, or we are seen dead.
        with contextlib.suppress(StorageError):
            await self._claims.release_all()
        await self._db.worker.call(self._inserts.close)
        await self._db.close()

    @property
    def lost(self) -> bool:
        """True when the file was deleted or replaced while this storage had it open:
        the events it held are gone."""
        return self._db.lost()

    async def __aenter__(self) -> SQLiteStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- inserts -----------------------------------------------------------------------

    def insert(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored | Awaitable[Stored]:
        """Store events under ``bound`` (see ``_sqlite_insert``): the emitter's insert."""
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
        self,
        payloads: Sequence[Mapping[str, str]],
        bound: Bound | None,
        listener: Listener,
    ) -> Stored:
        """From a thread that runs no event loop (the sync API), once the storage is
        open: store events, blocking until committed. ``listener`` must be thread-safe
        (it is called on the calling thread, or on the storage's)."""
        if not self._ready():
            raise StorageError(f"{self!r} is not open in this process")
        return self._inserts.insert_blocking(payloads, self._dest, bound, listener)

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event; returns True once it is committed to the file."""
        await self.add_event_rows([payload])
        return True

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """Store several events in one transaction: all of them or none."""
        if not payloads:
            return 0
        done = self.insert(payloads, None, _ignore)
        if not isinstance(done, Stored):
            done = await done
        return done.stored

    # -- the Storage protocol ------------------------------------------------------------

    async def _run(self, sql: str, params: Sequence[object] = ()) -> tuple[list[Any], int]:
        await self.open()
        return await self._db.execute(sql, params)

    async def delete_all_event_rows(self) -> int:
        """Delete every stored event (claimed ones too); return how many."""
        _, deleted = await self._run("DELETE FROM events")
        self._claims.deleted(deleted)
        return deleted

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        """Delete the events with these ids, claimed or not; return how many existed."""
        await self.open()
        deleted = await self._db.changed(
            [
                (f"DELETE FROM events WHERE id IN ({placeholders(len(chunk))})", chunk)
                for chunk in chunks(list(ids), MAX_PARAMS)
            ]
        )
        self._claims.deleted(deleted)
        return deleted

    async def get_all_event_rows(self) -> list[EventRow]:
        """Every stored event, oldest first."""
        rows, _ = await self._run("SELECT id, event FROM events ORDER BY id")
        return [EventRow(row_id, raw=raw) for row_id, raw in rows]

    async def get_event_rows_within_range(self, event_range: int) -> list[EventRow]:
        """Up to ``event_range`` stored events, oldest first (claimed ones included)."""
        await self.open()
        return await event_rows(
            self._db, "SELECT id, event FROM events ORDER BY id LIMIT ?", (max(event_range, 0),)
        )

    # -- what the emitter uses besides -----------------------------------------------------

    async def count(self) -> int:
        """How many events wait for this storage's destination (and for none), claimed
        ones included. The queue bound counts every event in the file instead."""
        rows, _ = await self._run(
            "SELECT count(*) FROM events WHERE dest IS NULL OR dest = ?", (self._dest,)
        )
        return int(rows[0][0])

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        """Claim and return up to ``limit`` of the oldest unclaimed rows.

        A claimed row is invisible to other claimers until this storage deletes or
        releases it, closes, dies, or the claim expires.
        """
        await self.open()
        return await self._claims.claim(limit, self._dest)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        """Give back claimed rows (their send failed) so they can be claimed again.
        If that fails, the next claim by this storage releases them first."""
        await self.open()
        await self._claims.release(ids)

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        """Delete rows this storage still holds the claim on (delivered or dropped).
        If that fails, they are neither released nor sent again: the next claim
        deletes them first."""
        await self.open()
        return await self._claims.delete(ids)

    async def reclaim_abandoned_rows(self) -> int:
        """Release rows whose owner process is dead or whose claim expired; return how
        many. Claims run it every few seconds."""
        await self.open()
        return await self._claims.reclaim_abandoned()

    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest unclaimed rows of this storage's
        destination (and of none)."""
        _, deleted = await self._run(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE owner IS NULL "
            "AND (dest IS NULL OR dest = ?) ORDER BY id LIMIT ?)",
            (self._dest, max(count, 0)),
        )
        self._claims.deleted(deleted)
        return deleted

    # -- destinations ----------------------------------------------------------------------

    async def bind_destination(self, identity: str, shown: str, *, legacy: bool = False) -> None:
        """Store and send only the rows of this destination from now on.

        Several programs may share one file while sending to different collectors, or
        to one collector as different tenants: each row records the destination it was
        tracked for, and this storage claims, counts toward its own sends and drops
        only its own rows (and rows of none: stored outside an emitter). ``identity``
        is everything that decides who receives and is billed (the emitter's effective
        endpoint, credentials and headers); the file keeps only a keyed hash of it.
        ``legacy``: also take over the rows an earlier version stored for ``shown``
        (it recorded the URL alone; only for an emitter without credentials or
        headers, whose rows those can be).
        """
        await self.open()

        def bind(conn: ForkSafeConnection) -> int:
            (salt,) = conn.rows("SELECT salt FROM queue_state")[0][0]
            key = (
                "key:"
                + hashlib.pbkdf2_hmac(
                    "sha256", identity.encode("utf-8", "surrogatepass"), salt, _HASH_ROUNDS
                ).hex()[:40]
            )
            return transaction(conn, lambda c: _bind(c, key, shown, legacy))

        self._dest = await self._db.run(bind)

    async def destinations(self) -> list[WaitingEvents]:
        """Every destination events wait for in this file, this storage's own first."""
        rows, _ = await self._run(
            "SELECT d.id, ifnull(d.shown, d.url), count(e.id) FROM destinations AS d "
            "JOIN events AS e ON e.dest = d.id GROUP BY d.id "
            "ORDER BY d.id != ?, d.id",
            (self._dest,),
        )
        return [WaitingEvents(int(n), str(shown), int(count)) for n, shown, count in rows]

    async def waiting_elsewhere(self) -> dict[str, tuple[str, int]]:
        return {
            str(waiting.number): (waiting.collector, waiting.events)
            for waiting in await self.destinations()
            if waiting.number != self._dest
        }

    async def adopt_events(self, number: int) -> int:
        """Make the events waiting for destination ``number`` (see ``destinations``)
        this storage's own, to be sent by its emitter; return how many moved."""
        if self._dest is None:
            raise StorageError(f"{self!r} has no destination yet: open an emitter on it first")
        _, moved = await self._run(
            "UPDATE events SET dest = ? WHERE dest = ? AND owner IS NULL", (self._dest, number)
        )
        return moved

    async def export_events(self, number: int) -> list[EventRow]:
        """The events waiting for destination ``number``, oldest first (a copy: they
        stay in the file; delete them with ``delete_event_rows``)."""
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
