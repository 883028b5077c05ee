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
* Claims: rows being sent are marked with an owner id and an expiry, so several
  processes can share one file without sending a row twice. Rows claimed by a process
  that died are taken back at once (see ``_owner``); expiry is the fallback. Rows whose
  release or delete failed are settled by this storage at its next claim.
* Disk: new files use incremental auto_vacuum; free pages go back to the file system
  once a large backlog has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from .. import _process
from ..exceptions import ConfigurationError, StorageError
from ._inline import InlineWriter
from ._owner import dead_owners, new_owner_id
from ._rowstore import RowStore
from ._sqlite_conn import MAX_PARAMS, SQLiteConnections
from .base import EventRow, encode_event

logger = logging.getLogger("asynctracker")

__all__ = ["SQLiteStorage"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
_T = TypeVar("_T")

# Once this many rows were deleted, an empty claim checks for free pages; above
# _VACUUM_MIN_FREE it returns them to the file system, _VACUUM_CHUNK pages per trip.
_VACUUM_AFTER_DELETES = 10_000
_VACUUM_MIN_FREE = 1024
_VACUUM_CHUNK = 2048
# How often claim_event_rows looks for rows held by dead or expired owners.
_RECLAIM_INTERVAL = 5.0
_SEPARATOR = "\x1e"  # ASCII record separator: escaped (\u001e) inside stored JSON


def _chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


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
        self._claim_ttl = claim_ttl
        self._owner = new_owner_id()
        self._next_reclaim = 0.0
        self._last_claim_stamp = 0.0
        # Claimed rows whose delete (after delivery) or release failed; see claim.
        self._undeleted: set[int] = set()
        self._unreleased: set[int] = set()
        self._deleted_since_vacuum = 0
        # The collector this storage's rows are for (see bind_destination); None until
        # an emitter binds it: rows are then stored for, and taken from, nobody's.
        self._dest: int | None = None

    def _opened(self) -> None:
        self._next_reclaim = 0.0  # look for abandoned rows at the first claim

    def _forked(self) -> None:
        self._owner = new_owner_id()
        self._undeleted.clear()  # the parent's rows: it settles them
        self._unreleased.clear()

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
        if self._pid != os.getpid():
            self._forget_parent()
        if self._loop is not asyncio.get_running_loop():
            await self._follow_loop()
        try:
            await self._group.drain()
            await self._close_inline()
            if self._conn is not None:
                # On failure the claims still come back: they expire, or we are seen dead.
                with contextlib.suppress(StorageError):
                    if self._undeleted:
                        await self.delete_event_rows(list(self._undeleted))
                    await self._fetch(
                        "UPDATE events SET owner = NULL, claimed_until = NULL WHERE owner = ?",
                        (self._owner,),
                    )
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
                if inline.checkpoint_due():
                    self._checkpointing = loop.create_task(self._checkpoint())
                return None
            if done is None and self._lock is not None and self._lock.locked():
                return self._insert_after_trip(inline, raw)
        return self._group.queue([raw])

    async def _insert_after_trip(self, inline: InlineWriter, raw: str) -> None:
        """The inline insert found the file locked while this storage's thread was on
        a trip (a claim, a delete): most likely by that trip. Wait for it to end (the
        loop runs meanwhile) and, holding the lock that keeps the thread idle, commit
        inline once more: cheaper than queueing the row behind the trip and then
        hopping to the thread. Locked by someone else still: the thread's turn."""
        lock = self._lock
        assert lock is not None
        async with lock:
            if self._inline is inline and inline.insert(raw, self._dest):
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
            if inline.checkpoint_due():
                self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())
            return
        await self._transaction(
            [
                (
                    f"INSERT INTO events(event, dest) VALUES {','.join(['(?, ?)'] * len(chunk))}",
                    [value for raw in chunk for value in (raw, dest)],
                )
                for chunk in _chunks(raws, MAX_PARAMS // 2)
            ]
        )

    # -- the Storage protocol -------------------------------------------------------

    async def delete_all_event_rows(self) -> int:
        """Delete every stored event (claimed ones too); return how many."""
        counted, _ = await self._transaction(
            [("SELECT COUNT(*) FROM events", ()), ("DELETE FROM events", ())]
        )
        return int(counted[0][0])

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        """Delete the events with these ids; return how many existed.

        If it fails (the file stayed locked, the disk is full), rows this storage had
        claimed stay claimed and are neither released nor sent again: the next claim
        deletes them first. They were delivered; a resend would duplicate them.
        """
        try:
            deleted = await self._delete(ids)
        except StorageError:
            self._undeleted.update(ids)
            raise
        self._undeleted.difference_update(ids)
        self._deleted_since_vacuum += deleted
        return deleted

    async def _reclaim_space(self) -> None:
        """The queue is empty after many deletes: shrink the file (incremental
        auto_vacuum, on files this version created). A chunk of pages per trip, so
        inserts and other processes get the lock in between."""
        self._deleted_since_vacuum = 0
        if (await self._fetch("PRAGMA auto_vacuum"))[0][0] != 2:
            return  # an older file, made without incremental auto_vacuum
        while (await self._fetch("PRAGMA freelist_count"))[0][0] >= _VACUUM_MIN_FREE:
            conn = await self._connection()
            assert self._lock is not None
            try:
                async with self._lock:
                    # executescript: the pragma frees one page per step, and only
                    # sqlite3_exec steps it to the end.
                    await conn.executescript(f"PRAGMA incremental_vacuum({_VACUUM_CHUNK})")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    async def _delete(self, ids: Sequence[int]) -> int:
        statements = [
            (f"DELETE FROM events WHERE id IN ({_placeholders(len(chunk))})", chunk)
            for chunk in _chunks(list(ids), MAX_PARAMS)
        ]
        if len(statements) == 1:
            return (await self._execute(*statements[0]))[1]
        counted = [("SELECT COUNT(*) FROM events", ())]
        before, *_, after = await self._transaction([*counted, *statements, *counted])
        return int(before[0][0]) - int(after[0][0])

    async def get_all_event_rows(self) -> list[EventRow]:
        """Every stored event, oldest first."""
        rows = await self._fetch("SELECT id, event FROM events ORDER BY id")
        return [EventRow(row_id, raw=raw) for row_id, raw in rows]

    async def get_event_rows_within_range(self, event_range: int) -> list[EventRow]:
        """Up to ``event_range`` stored events, oldest first (claimed ones included)."""
        return await self._fetch_rows(
            "SELECT id, event FROM events ORDER BY id LIMIT ?", (max(event_range, 0),)
        )

    async def _fetch_rows(self, select: str, params: Sequence[object]) -> list[EventRow]:
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
        if self._undeleted:
            await self.delete_event_rows(list(self._undeleted))
        if self._unreleased:
            await self.release_event_rows(list(self._unreleased))
        now = time.time()
        if now >= self._next_reclaim:
            self._next_reclaim = now + _RECLAIM_INTERVAL
            await self.reclaim_abandoned_rows()
        # A value unique to this claim marks its rows, so they can be read back as one
        # aggregated row (an UPDATE ... RETURNING yields them one GIL trip at a time).
        stamp = max(now + self._claim_ttl, self._last_claim_stamp + 1e-3)
        self._last_claim_stamp = stamp
        _, claimed = await self._execute(
            "UPDATE events SET owner = ?, claimed_until = ? WHERE id IN "
            "(SELECT id FROM events WHERE owner IS NULL AND (dest IS NULL OR dest = ?) "
            "ORDER BY id LIMIT ?)",
            (self._owner, stamp, self._dest, max(limit, 0)),
        )
        if not claimed:
            if self._deleted_since_vacuum >= _VACUUM_AFTER_DELETES:
                await self._reclaim_space()
            return []
        return await self._fetch_rows(
            "SELECT id, event FROM events WHERE owner = ? AND claimed_until = ?",
            (self._owner, stamp),
        )

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        """Give back claimed rows (their send failed) so they can be claimed again.

        Rows whose delete failed are kept (see ``delete_event_rows``). If the release
        fails, the next claim by this storage releases them first: they come back to
        this process, not only to the next one.
        """
        ids = [row_id for row_id in ids if row_id not in self._undeleted]
        try:
            await self._release(ids)
        except StorageError:
            self._unreleased.update(ids)
            raise
        self._unreleased.difference_update(ids)

    async def _release(self, ids: Sequence[int]) -> None:
        statements = [
            (
                "UPDATE events SET owner = NULL, claimed_until = NULL "
                f"WHERE owner = ? AND id IN ({_placeholders(len(chunk))})",
                [self._owner, *chunk],
            )
            for chunk in _chunks(list(ids), MAX_PARAMS - 1)
        ]
        if statements:
            await self._transaction(statements)

    async def reclaim_abandoned_rows(self) -> int:
        """Release rows whose owner process is dead or whose claim expired, this
        storage's own expired claims included (a send never takes ``claim_ttl``; rows
        whose delete failed after delivery are kept, see ``delete_event_rows``)."""
        owners = [
            str(row[0])
            for row in await self._fetch(
                "SELECT DISTINCT owner FROM events WHERE owner IS NOT NULL AND owner != ?",
                (self._owner,),
            )
        ]
        dead = await asyncio.to_thread(dead_owners, owners, me=self._owner) if owners else []
        # While some rows await their delete, this storage's own claims stay as they are.
        keep_own = self._owner if self._undeleted else ""
        _, released = await self._execute(
            "UPDATE events SET owner = NULL, claimed_until = NULL WHERE owner IS NOT NULL "
            f"AND owner != ? AND (claimed_until < ? OR owner IN ({_placeholders(len(dead))}))",
            [keep_own, time.time(), *dead],
        )
        return released

    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest unclaimed rows of this storage's
        collector (overflow: drop oldest)."""
        _, deleted = await self._execute(
            "DELETE FROM events WHERE id IN "
            "(SELECT id FROM events WHERE owner IS NULL AND (dest IS NULL OR dest = ?) "
            "ORDER BY id LIMIT ?)",
            (self._dest, max(count, 0)),
        )
        return deleted
