"""Group commit: concurrent inserts share one transaction, each caller awaiting its own.

SQLiteStorage commits on its SQLite thread, one trip at a time. While a trip is on the
disk, new rows queue up here; one writer task then hands them over together, so a burst
of 100 ``track_*`` calls costs a few transactions instead of 100, and every caller still
returns only once its own rows are committed (the design's "awaits the storage insert").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from ..exceptions import StorageError

__all__ = ["GroupCommit"]

# Loop turns the writer waits, at most, for more inserts to join a trip.
_SETTLE_TURNS = 3


class GroupCommit:
    """Rows queued by concurrent callers and written together by one writer task.

    ``write(rows)`` stores the rows in one transaction (all or none); a group holds up
    to ``max_rows`` rows, except that one caller's rows are never split. Belongs to one
    event loop: the storage makes a new one for a new loop or a forked child.
    """

    def __init__(self, write: Callable[[list[str]], Awaitable[object]], *, max_rows: int) -> None:
        self._write = write
        self._max_rows = max_rows
        self._pending: deque[tuple[list[str], asyncio.Future[None]]] = deque()
        self._writer: asyncio.Task[None] | None = None

    def queue(self, rows: list[str]) -> asyncio.Future[None]:
        """Queue rows for the next group; the future is done once they are committed
        (or failed). A plain future, not a coroutine: on the hot path of every track_*
        call that is one frame less to create and resume per event.

        If the caller awaiting it is cancelled, the rows may still be committed
        (at-least-once).
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_pending())
        return future

    @property
    def idle(self) -> bool:
        """True when no rows wait or are being written: a new row may go elsewhere
        without overtaking any."""
        return self._writer is None

    async def drain(self) -> None:
        """Wait until every queued row is committed or failed (before closing)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write_pending(self) -> None:
        try:
            while self._pending:
                await self._gather_stragglers()
                group: list[tuple[list[str], asyncio.Future[None]]] = []
                size = 0
                while self._pending and (
                    not group or size + len(self._pending[0][0]) <= self._max_rows
                ):
                    entry = self._pending.popleft()
                    group.append(entry)
                    size += len(entry[0])
                try:
                    await self._write([row for rows, _ in group for row in rows])
                except BaseException as exc:
                    error = exc if isinstance(exc, StorageError) else StorageError(str(exc))
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, future in group:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._writer = None
            # Entries are left only if this task was cancelled (the loop is closing):
            # fail them rather than leave their callers waiting forever.
            while self._pending:
                _, future = self._pending.popleft()
                if not future.done():
                    future.set_exception(StorageError("the insert was cancelled"))

    async def _gather_stragglers(self) -> None:
        """Let callers that are about to insert join this group (a few loop turns).

        Callers woken by the previous commit reach their next insert over a turn or
        two (the emitter yields now and then). Starting the trip at the first one
        splits them into two small transactions, and the SQLite thread then waits for
        the GIL while the loop is still busy with the rest. Waiting until no new
        insert arrives in a turn gives one full group and a trip made while the loop
        is idle: about a third more inserts per second at 100 concurrent callers.
        """
        waiting = 0
        for _ in range(_SETTLE_TURNS):
            if len(self._pending) == waiting:
                return
            waiting = len(self._pending)
            await asyncio.sleep(0)
