"""The rows one SQLiteStorage has claimed for sending, in a file processes may share.

A claim marks rows with the owner id (``_process``) and an expiry: a dead owner's rows
come back at once; a claim of this boot expires by the monotonic clock, which wall-clock
steps never move (the wall-clock expiry is kept for earlier versions and unknown boots).
Deletes and releases touch only rows still held, and one that fails is done by the next
claim: delivered rows are never sent again. Once many rows were deleted and a claim
finds nothing, free pages go back to the file system (incremental auto_vacuum).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

from .._process import BOOT, dead_owners, new_owner_id
from ..exceptions import StorageError
from ._sqlite_db import MAX_PARAMS, Database, chunks, placeholders
from .base import EventRow

__all__ = ["Claims"]

# After this many deletes, an empty claim returns free pages (above _VACUUM_MIN_FREE)
# to the file system, _VACUUM_CHUNK per trip.
_VACUUM_AFTER_DELETES = 10_000
_VACUUM_MIN_FREE = 1024
_VACUUM_CHUNK = 2048
# How often (monotonic seconds) a claim looks for rows held by dead or expired owners.
_RECLAIM_INTERVAL = 5.0
_SEPARATOR = "\x1e"  # ASCII record separator: escaped (\u001e) inside stored JSON
_UNCLAIM = "owner = NULL, claimed_until = NULL, claim_boot = NULL, claim_mono = NULL"


class Claims:
    """One storage's claims on the rows of its file (see the module)."""

    def __init__(self, db: Database, claim_ttl: float) -> None:
        self._db = db
        self._claim_ttl = claim_ttl
        self._last_stamp = 0.0
        self._deleted_since_vacuum = 0
        self.forked()

    def forked(self) -> None:
        """Start as a new owner (in a forked child, the parent settles its own rows)."""
        self.owner = new_owner_id()
        self._next_reclaim = 0.0
        # Claimed rows whose delete (after delivery) or release failed; see claim.
        self._undeleted: set[int] = set()
        self._unreleased: set[int] = set()

    def deleted(self, count: int) -> None:
        """``count`` rows were deleted (by any path): space to give back later."""
        self._deleted_since_vacuum += count

    async def claim(self, limit: int, dest: int | None) -> list[EventRow]:
        """Claim up to ``limit`` of the oldest unclaimed rows of ``dest`` (and of none),
        settling failed deletes and releases first."""
        if self._undeleted:
            await self.delete(list(self._undeleted))
        if self._unreleased:
            await self.release(list(self._unreleased))
        mono = time.monotonic()
        if mono >= self._next_reclaim:
            self._next_reclaim = mono + _RECLAIM_INTERVAL
            await self.reclaim_abandoned()
        # A value unique to this claim marks its rows, so they are read back as one
        # aggregated row (an UPDATE ... RETURNING yields them one GIL trip at a time).
        stamp = max(mono + self._claim_ttl, self._last_stamp + 1e-6)
        self._last_stamp = stamp
        _, claimed = await self._db.execute(
            "UPDATE events SET owner = ?, claimed_until = ?, claim_boot = ?, claim_mono = ? "
            "WHERE id IN (SELECT id FROM events WHERE owner IS NULL "
            "AND (dest IS NULL OR dest = ?) ORDER BY id LIMIT ?)",
            (self.owner, time.time() + self._claim_ttl, BOOT, stamp, dest, max(limit, 0)),
        )
        if not claimed:
            if self._deleted_since_vacuum >= _VACUUM_AFTER_DELETES:
                await self._reclaim_space()
            return []
        return await event_rows(
            self._db,
            "SELECT id, event FROM events WHERE owner = ? AND claim_mono = ?",
            (self.owner, stamp),
        )

    def _owned(self, sql: str, ids: Sequence[int]) -> list[tuple[str, Sequence[object]]]:
        """``sql ... WHERE owner = me AND id IN (ids)``, in statements of few enough ids."""
        return [
            (f"{sql} WHERE owner = ? AND id IN ({placeholders(len(part))})", [self.owner, *part])
            for part in chunks(list(ids), MAX_PARAMS - 1)
        ]

    async def delete(self, ids: Sequence[int]) -> int:
        """Delete these rows if this storage still holds their claim; return how many.
        If that fails, they stay claimed, never sent again (they were delivered or
        dropped): the next claim deletes them first."""
        try:
            deleted = await self._db.delete(self._owned("DELETE FROM events", ids))
        except StorageError:
            self._undeleted.update(ids)
            raise
        self._undeleted.difference_update(ids)
        self.deleted(deleted)
        return deleted

    async def release(self, ids: Sequence[int]) -> None:
        """Give back claimed rows (their send failed), but those waiting for their
        delete; if that fails, the next claim releases them first."""
        ids = [row_id for row_id in ids if row_id not in self._undeleted]
        try:
            await self._db.changed(self._owned(f"UPDATE events SET {_UNCLAIM}", ids))
        except StorageError:
            self._unreleased.update(ids)
            raise
        self._unreleased.difference_update(ids)

    async def release_all(self) -> None:
        """On close: finish failed deletes, then give back every row still claimed."""
        if self._undeleted:
            await self.delete(list(self._undeleted))
        await self._db.execute(f"UPDATE events SET {_UNCLAIM} WHERE owner = ?", (self.owner,))

    async def reclaim_abandoned(self) -> int:
        """Release rows whose owner is dead or whose claim expired (this storage's own
        too, but while some of its rows wait for their delete)."""
        me = self.owner
        db = self._db
        owners = [
            (str(owner), boot)
            for owner, boot in (
                await db.execute(
                    "SELECT DISTINCT owner, claim_boot FROM events "
                    "WHERE owner IS NOT NULL AND owner != ?",
                    (me,),
                )
            )[0]
        ]
        dead = await db.worker.call(functools.partial(dead_owners, owners, me=me)) if owners else []
        # The owner kept (none, unless rows wait for their delete), the dead owners, then
        # this boot's claims by the monotonic clock, the others' by the wall clock.
        _, released = await db.execute(
            f"UPDATE events SET {_UNCLAIM} WHERE owner IS NOT NULL AND owner != ? AND ("
            f"owner IN ({placeholders(len(dead))}) "
            "OR (ifnull(claim_boot = ?, 0) AND claim_mono < ?) "
            "OR (NOT ifnull(claim_boot = ?, 0) AND claimed_until < ?))",
            [me if self._undeleted else "", *dead, BOOT, time.monotonic(), BOOT, time.time()],
        )
        return released

    async def _reclaim_space(self) -> None:
        """The queue is empty after many deletes: shrink the file, a chunk of pages per
        trip (inserts and other processes get the lock in between)."""
        self._deleted_since_vacuum = 0
        if (await self._db.execute("PRAGMA auto_vacuum"))[0][0][0] != 2:
            return  # an older file, made without incremental auto_vacuum
        while (await self._db.execute("PRAGMA freelist_count"))[0][0][0] >= _VACUUM_MIN_FREE:
            # sqlite3_exec steps the pragma to its end (it frees pages one step at a time).
            await self._db.run(
                lambda conn: conn.script(f"PRAGMA incremental_vacuum({_VACUUM_CHUNK})")
            )


async def event_rows(db: Database, select: str, params: Sequence[object]) -> list[EventRow]:
    """The ``(id, event)`` rows of ``select``, oldest first, fetched as ONE row that
    group_concat folds them into (stored events are ASCII JSON: the record separator
    0x1E never occurs inside one)."""
    rows, _ = await db.execute(
        f"SELECT group_concat(id), group_concat(event, char(30)) FROM ({select})", params
    )
    ids, events = rows[0]
    if ids is None:
        return []
    pairs = sorted(zip(map(int, ids.split(",")), events.split(_SEPARATOR), strict=True))
    return [EventRow(row_id, raw=raw) for row_id, raw in pairs]
