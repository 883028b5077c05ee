"""The collector's SQLite file, through aiosqlite: one connection, one task that uses it.

The collector opens and closes its own database, so aiosqlite's connection (a thread
that runs one call at a time, in order) is all it needs. Every operation goes through
one queue, drained by one writer task: inserts, the deletion of every event, and the
queries of the listings. So a query always sees every insert queued before it, a reset
never overtakes an insert, and the event loop never waits for the disk. Inserts that
piled up while the writer was busy are written in one ``executemany`` and one commit, so
a burst of requests does not turn into a commit each.

Closing writes whatever is still queued, then closes the connection, which ends
aiosqlite's thread. That thread is not a daemon, so an open connection would keep a
program from exiting: the collector closes its database when it stops and stops itself
when its event loop shuts down; :mod:`._exit` covers a loop that never shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeVar, cast

import aiosqlite

from ._exit import forget_at_exit, stop_at_exit
from ._safe import scrub
from ._table import COLUMNS, INSERT, SCHEMA, Filters, Row, StoredEvent, row_values

__all__ = ["Database"]

logger = logging.getLogger("asynctracker")

T = TypeVar("T")

#: WAL: the listings' readers (and :attr:`EventLog.events`' own connection) never wait
#: for the writer; NORMAL: a commit is not an fsync, which a dev collector does not need.
_PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"

#: A unit of work for the writer, run with the connection after everything before it.
Job = Callable[[aiosqlite.Connection], Awaitable[None]]


async def _nothing(connection: aiosqlite.Connection) -> None:
    """The job that ends a run of inserts when the queue holds nothing else."""


class Database:
    """The collector's SQLite file: queued inserts and resets, ordered queries.

    Made by :meth:`open`; ``on_commit(seq)`` is called on the loop once the events up
    to ``seq`` are committed.
    """

    def __init__(self, connection: aiosqlite.Connection, on_commit: Callable[[int], None]) -> None:
        loop = asyncio.get_running_loop()
        self._connection = connection
        self._on_commit = on_commit
        #: Rows to insert, a job, or ``None``: stop.
        self._jobs: asyncio.Queue[list[StoredEvent] | Job | None] = asyncio.Queue()
        self._closed = False
        self._writer = loop.create_task(self._write(), name="asynctracker-collector-db")
        stop_at_exit(connection, loop)

    @classmethod
    async def open(cls, path: str, on_commit: Callable[[int], None]) -> Database:
        """Open (creating or upgrading) the file; raises ``sqlite3.Error`` as it is."""
        connection = await aiosqlite.connect(path)
        try:
            await connection.executescript(_PRAGMAS + SCHEMA)
            await _migrate(connection)
        except BaseException:
            await connection.close()
            raise
        return cls(connection, on_commit)

    # -- what the event log queues ---------------------------------------------------

    def insert(self, rows: list[StoredEvent]) -> None:
        """Queue rows (in ``seq`` order) for insertion."""
        self._check_open()
        self._jobs.put_nowait(rows)

    def clear(self) -> None:
        """Queue the deletion of every event (after any insert queued before)."""
        self._check_open()
        self._jobs.put_nowait(_delete_all)

    async def page(
        self, filters: Filters, *, limit: int, offset: int = 0, newest_first: bool = True
    ) -> tuple[int, list[Row]]:
        """How many events match ``filters``, and one page of them."""
        where, params = filters.where()
        order = "DESC" if newest_first else "ASC"

        async def query(connection: aiosqlite.Connection) -> tuple[int, list[Row]]:
            count = f"SELECT count(*) FROM collector_events{where}"
            [(total,)] = await connection.execute_fetchall(count, params)
            select = (
                f"SELECT {COLUMNS} FROM collector_events{where} "
                f"ORDER BY seq {order} LIMIT ? OFFSET ?"
            )
            rows = await connection.execute_fetchall(select, [*params, limit, offset])
            return int(total), cast("list[Row]", list(rows))

        return await self._run(query)

    async def summary(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """(highest seq, count per event type, count per validity ``good``/``bad``)."""

        async def query(
            connection: aiosqlite.Connection,
        ) -> tuple[int, dict[str, int], dict[str, int]]:
            [(highest,)] = await connection.execute_fetchall(
                "SELECT coalesce(max(seq), 0) FROM collector_events"
            )
            types = await connection.execute_fetchall(
                "SELECT event_type, count(*) FROM collector_events GROUP BY 1"
            )
            valid = await connection.execute_fetchall(
                "SELECT valid, count(*) FROM collector_events GROUP BY 1"
            )
            by_validity = {bool(flag): int(count) for flag, count in valid}
            validity = {"good": by_validity.get(True, 0), "bad": by_validity.get(False, 0)}
            return int(highest), {str(kind): int(count) for kind, count in types}, validity

        return await self._run(query)

    async def close(self) -> None:
        """Write everything queued, then close the file (ending aiosqlite's thread).

        Idempotent. ``asyncio.run`` cancels every task before the collector's loop-end
        hook closes it, so a cancelled writer's leftovers are written here instead.
        """
        if self._closed:
            return
        self._closed = True
        self._jobs.put_nowait(None)
        await asyncio.wait({self._writer})
        if self._writer.cancelled():
            await self._write()
        try:
            # A batch whose writer was cancelled between executemany and commit.
            await self._connection.commit()
        finally:
            forget_at_exit(self._connection)
            await self._connection.close()

    # -- the writer ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the collector's database is closed")

    async def _run(self, query: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """``await query(connection)`` on the writer, after every job queued before it."""
        self._check_open()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def job(connection: aiosqlite.Connection) -> None:
            if future.done():  # its caller gave up (a client that went away)
                return
            try:
                result = await query(connection)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                if not future.done():  # the writer was cancelled mid-query
                    future.cancel()

        self._jobs.put_nowait(job)
        return await future

    async def _write(self) -> None:
        """Run queued work in order until ``None``; consecutive inserts share a commit."""
        jobs = self._jobs
        while True:
            item = await jobs.get()
            batch: list[StoredEvent] = []
            while isinstance(item, list):
                batch += item
                item = _nothing if jobs.empty() else jobs.get_nowait()
            if batch:
                await self._insert(batch)
            if item is None:
                return
            await item(self._connection)

    async def _insert(self, batch: list[StoredEvent]) -> None:
        connection = self._connection
        # A generator: aiosqlite's thread consumes it, so decoding each payload for the
        # filter columns happens there rather than on the event loop.
        values = (row_values(*row) for row in batch)
        try:
            await connection.executemany(INSERT, values)
            await connection.commit()
        except Exception:
            logger.exception("collector could not store %d events", len(batch))
            with contextlib.suppress(Exception):
                await connection.rollback()
            return
        self._on_commit(batch[-1][0])


async def _delete_all(connection: aiosqlite.Connection) -> None:
    try:
        await connection.execute("DELETE FROM collector_events")
        await connection.commit()
    except Exception:
        logger.exception("collector could not delete its events")
        with contextlib.suppress(Exception):
            await connection.rollback()


async def _migrate(connection: aiosqlite.Connection) -> None:
    """Move events stored by earlier versions (table ``received_events``) into this table.

    Their text is scrubbed on the way, since earlier versions stored lone surrogates that
    broke every page showing them; rows that no longer parse are dropped.
    """
    found = await connection.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'received_events'"
    )
    if not list(found):
        return
    rows = await connection.execute_fetchall(
        "SELECT id, payload, method, errors, received_at FROM received_events ORDER BY id"
    )
    await connection.executemany(INSERT, _migrated(cast("Iterable[Row]", rows)))
    await connection.execute("DROP TABLE received_events")
    await connection.commit()


def _migrated(rows: Iterable[Row]) -> Iterator[tuple[object, ...]]:
    """The stored columns of each old row that still parses (consumed on aiosqlite's
    thread, like every insert's)."""
    for seq, payload, method, errors, received_at in rows:
        try:
            event, _ = scrub(json.loads(payload))
            problems, _ = scrub(json.loads(errors))
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict) and isinstance(problems, list):
            yield row_values(seq, event, method, tuple(map(str, problems)), received_at)
