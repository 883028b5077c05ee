"""SQLiteStorage: the durable default. Events survive restarts, crashes and ``kill -9``.

Design notes:

* Connections, their event loop and fork handling: ``_sqlite_conn``; a lone caller's
  insert committed on the loop's thread, never waiting: ``_inline``.
* Group commit (``_group_commit``): concurrent ``add_event_row`` calls queue up while
  one insert is on the disk, then share the next transaction. Every caller still
  returns only after its own row is committed, but a burst costs a few transactions
  instead of one per event.
* WAL journal with ``synchronous=NORMAL`` by default: a committed event survives the
  process being killed (the WAL is in the OS page cache); only an OS crash or power
  loss can lose the last commits. ``synchronous="FULL"`` closes that window at the cost
  of an fsync per commit.
* Claims (``_sqlite_claims``): rows being sent are marked with an owner id and an
  expiry, so several processes can share one file without sending a row twice. Rows
  claimed by a process that died are taken back at once; expiry is the fallback. Rows
  whose release or delete failed are settled by this storage at its next claim.
* Disk: new files use incremental auto_vacuum; free pages go back to the file system
  once a large backlog has drained.
* Ids: plain rowids. They grow while rows exist, but once the newest rows are deleted
  their ids may be given again (SQLite's rule without AUTOINCREMENT, which costs a
  second page write per commit): do not keep an id after its row may have been
  delivered and deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from .. import _process
from ..exceptions import ConfigurationError, StorageError
from ._inline import InlineWriter, insert_statement
from ._rowstore import RowStore
from ._sqlite_claims import Claims
from ._sqlite_conn import MAX_PARAMS, SQLiteConnections, chunks, placeholders
from .base import EventRow, encode_event

logger = logging.getLogger("asynctracker")

__all__ = ["SQLiteStorage"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class SQLiteStorage(SQLiteConnections, RowStore, builtin=True):
    """Durable storage in one SQLite file (created on first use).

    Args:
        path: the database file. Its folder must exist and be writable.
        synchronous: SQLite's ``synchronous`` level. ``"NORMAL"`` (default) survives
            process crashes; ``"FULL"`` also survives power loss, slower.
        busy_timeout: seconds to wait for another process's lock before a call fails
            with StorageError.
        claim_ttl: seconds after which rows claimed by a process that cannot be
            checked (another host, say) become sendable again.
        inline_writes: commit a lone caller's insert on the event loop's thread, on a
            connection that never waits for a lock (see ``_inline``); ``False`` runs
            every statement on the storage's thread. Ignored (always the thread) with
            ``synchronous="FULL"`` or ``"EXTRA"``, which fsync on every commit.

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
        super().__init__(
            Path(path),
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            inline_writes=bool(inline_writes),
        )
        self._claims = Claims(self, claim_ttl)
        # The collector this storage's rows are for (see bind_destination); None until
        # an emitter binds it: rows are then stored for, and taken from, nobody's.
        self._dest: int | None = None

    def _opened(self) -> None:
        self._claims.opened()

    def _forked(self) -> None:
        self._claims.forked()

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    @property
    def location(self) -> str:
        """The database file, where undelivered events wait for the next emitter."""
        return str(self.path)

    async def aclose(self) -> None:
        """Wait for pending inserts, release this storage's claims, close. Idempotent."""
        if self._closed:
            return
        await self._follow()
        try:
            await self._group.drain()
            if self._conn is not None:
                # On failure the claims still come back: they expire, or we are seen dead.
                with contextlib.suppress(StorageError):
                    await self._claims.release_all()
        finally:
            await self._close_connections()

    async def __aenter__(self) -> SQLiteStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- inserts (group commit) -----------------------------------------------------

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event; returns True once it is committed to the file."""
        pending = self.add_nowait(payload, asyncio.get_running_loop())
        if pending is not None:
            await pending
        return True

    def add_nowait(
        self, payload: Mapping[str, str], loop: asyncio.AbstractEventLoop | None
    ) -> Awaitable[None] | None:
        """Store one event: None if it is committed already (inline, see ``_inline``),
        else an awaitable done once it is committed by the thread's next group commit.
        ``loop`` is the running loop (the emitter knows it already).

        Used by the emitter on every ``track_*`` call: while the storage is open the
        awaitable is the commit's future itself, not a coroutine, so no frame is made
        and resumed per event."""
        if (
            self._conn is None
            or self._closed
            or self._forks != _process.forks
            or self._loop is not loop
        ):
            return self._connect_and_queue([encode_event(payload)])
        raw = encode_event(payload)
        inline = self._inline
        if (
            inline is not None
            and loop is not None
            and self._group.idle
            and self._checkpointing is None
            and inline.may_insert(loop)
        ):
            done = inline.insert(raw, self._dest)
            if done:
                self._committed_inline(inline, loop)
                return None
            if done is None and self._lock is not None and self._lock.locked():
                return self._insert_after_trip(inline, raw, loop)
        return self._group.queue([raw])

    def _committed_inline(self, inline: InlineWriter, loop: asyncio.AbstractEventLoop) -> None:
        """A commit on the loop's thread is done: start a checkpoint when one is due."""
        if inline.checkpoint_due():
            self._checkpointing = loop.create_task(self._checkpoint())

    async def _insert_after_trip(
        self, inline: InlineWriter, raw: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        """The inline insert found the file locked while this storage's thread was on
        a trip (a claim, a delete): most likely by that trip. Wait for it to end (the
        loop runs meanwhile) and, holding the lock that keeps the thread idle, commit
        inline once more: cheaper than queueing the row behind the trip and then
        hopping to the thread. Locked by someone else still: the thread's turn."""
        lock = self._lock
        assert lock is not None
        async with lock:
            if (
                self._inline is inline
                and self._checkpointing is None
                and inline.insert(raw, self._dest)
            ):
                self._committed_inline(inline, loop)
                return
        await self._group.queue([raw])

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database from the thread (the inline connection never
        checkpoints), so the WAL stops growing while inserts run inline.

        Inserts go to the thread until it is done: racing it, inline commits would keep
        the WAL from ever being copied in full, and SQLite starts it over (instead of
        growing it) only once it was."""
        try:
            await self._fetch("PRAGMA wal_checkpoint(PASSIVE)")
        except StorageError as exc:
            logger.debug("WAL checkpoint failed (retried later): %s", exc)
        finally:
            if self._checkpointing is asyncio.current_task():
                self._checkpointing = None

    async def _connect_and_queue(self, raws: list[str]) -> None:
        await self._connection()
        await self._group.queue(raws)

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """Store several events in one transaction: all of them or none."""
        raws = [encode_event(payload) for payload in payloads]
        if raws:
            await self._connect_and_queue(raws)
        return len(raws)

    async def _insert(self, raws: list[str]) -> None:
        """One group commit: all these rows in one transaction (inline, or one trip)."""
        dest = self._dest
        inline = self._inline  # a small group: one statement on the loop's thread
        if inline is not None and self._checkpointing is None and inline.insert_group(raws, dest):
            self._committed_inline(inline, asyncio.get_running_loop())
            return
        await self._transaction(
            [insert_statement(chunk, dest) for chunk in chunks(raws, MAX_PARAMS // 2)]
        )

    # -- the Storage protocol -------------------------------------------------------

    async def delete_all_event_rows(self) -> int:
        """Delete every stored event (claimed ones too); return how many."""
        deleted = await self._changed([("DELETE FROM events", ())])
        self._claims.deleted(deleted)
        return deleted

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        """Delete the events with these ids, claimed or not; return how many existed."""
        deleted = await self._changed(
            [
                (f"DELETE FROM events WHERE id IN ({placeholders(len(chunk))})", chunk)
                for chunk in chunks(list(ids), MAX_PARAMS)
            ]
        )
        self._claims.deleted(deleted)
        return deleted

    async def get_all_event_rows(self) -> list[EventRow]:
        """Every stored event, oldest first."""
        rows = await self._fetch("SELECT id, event FROM events ORDER BY id")
        return [EventRow(row_id, raw=raw) for row_id, raw in rows]

    async def get_event_rows_within_range(self, event_range: int) -> list[EventRow]:
        """Up to ``event_range`` stored events, oldest first (claimed ones included)."""
        return await self._fetch_event_rows(
            "SELECT id, event FROM events ORDER BY id LIMIT ?", (max(event_range, 0),)
        )

    # -- optional methods the emitter uses --------------------------------------------

    async def count(self) -> int:
        """How many events wait for this storage's collector (claimed ones included),
        stored by every process; rows of no collector count too (see bind_destination)."""
        rows = await self._fetch(
            "SELECT COUNT(*) FROM events WHERE dest IS NULL OR dest = ?", (self._dest,)
        )
        return int(rows[0][0])

    async def bind_destination(self, collector: str) -> dict[str, int]:
        """Store and send only the rows of ``collector`` from now on.

        Several programs may share one file while sending to different collectors (a
        staging script and a production service in one folder): each row records the
        collector it was tracked for, and this storage claims, counts and drops only
        the rows of its own (and rows of none: stored before any emitter bound a
        storage, or by a version that did not record it). Returns how many rows wait
        for each other collector, so the emitter can say so. The emitter calls this
        when it opens, with the collector URL stripped of credentials.
        """
        _, rows, waiting = await self._transaction(
            [
                ("INSERT OR IGNORE INTO destinations(url) VALUES (?)", (collector,)),
                ("SELECT id FROM destinations WHERE url = ?", (collector,)),
                (
                    "SELECT d.url, COUNT(*) FROM events AS e JOIN destinations AS d "
                    "ON e.dest = d.id WHERE d.url != ? GROUP BY d.url ORDER BY d.url",
                    (collector,),
                ),
            ]
        )
        self._dest = int(rows[0][0])
        return {str(url): int(count) for url, count in waiting}

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        """Claim and return up to ``limit`` of the oldest unclaimed rows.

        A claimed row is invisible to other claimers until this storage deletes or
        releases it, closes, dies, or the claim expires.
        """
        return await self._claims.claim(limit, self._dest)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        """Give back claimed rows (their send failed) so they can be claimed again.
        If that fails, the next claim by this storage releases them first."""
        await self._claims.release(ids)

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        """Delete rows this storage still holds the claim on (delivered or dropped).
        If that fails, they are neither released nor sent again: the next claim
        deletes them first."""
        return await self._claims.delete(ids)

    async def reclaim_abandoned_rows(self) -> int:
        """Release rows whose owner process is dead or whose claim expired; return how
        many. Claims run it every few seconds."""
        return await self._claims.reclaim_abandoned()

    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest unclaimed rows of this storage's
        collector (overflow: drop oldest)."""
        _, deleted = await self._execute(
            "DELETE FROM events WHERE id IN "
            "(SELECT id FROM events WHERE owner IS NULL AND (dest IS NULL OR dest = ?) "
            "ORDER BY id LIMIT ?)",
            (self._dest, max(count, 0)),
        )
        self._claims.deleted(deleted)
        return deleted
