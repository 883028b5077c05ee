"""SQLiteStorage commits a lone caller's insert on the caller's thread, and never waits
there; concurrent callers share a group commit, on their loop (one statement) when it is
small, else on the storage's thread.

Real SQLite files; a second ``sqlite3`` connection (or process) plays the other writer.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import asynctracker as at
from asynctracker.storage import _sqlite_insert


def payload(n: int) -> dict[str, str]:
    return {"e": "se", "se_ca": "c", "se_ac": f"a-{n}"}


def stored_actions(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT json_extract(event, '$.se_ac') FROM events")]
    finally:
        conn.close()


def finishes_without_suspending(coro: Coroutine[Any, Any, object]) -> bool:
    """Run the coroutine's first step: True if it returned there (never suspended)."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


async def test_a_lone_callers_insert_is_committed_without_leaving_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inline.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))  # the first turn's caller
        await asyncio.sleep(0)
        assert finishes_without_suspending(storage.add_event_row(payload(1)))
        # Committed: another connection sees it while the storage is still open.
        assert stored_actions(path) == ["a-0", "a-1"]


@pytest.mark.parametrize(
    "options",
    [{"inline_writes": False}, {"synchronous": "FULL"}],
    ids=["inline_writes=False", "synchronous=FULL"],
)
async def test_inserts_run_on_the_thread_when_inline_is_off_or_every_commit_fsyncs(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "thread.db"
    async with at.SQLiteStorage(path, **options) as storage:
        await storage.add_event_row(payload(0))
        await asyncio.sleep(0)
        assert not finishes_without_suspending(storage.add_event_row(payload(1)))
        await storage.add_event_row(payload(2))  # the row of the abandoned call went too
        assert stored_actions(path) == ["a-0", "a-1", "a-2"]


async def test_a_second_caller_in_the_same_turn_waits_for_the_group_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "two.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        await asyncio.sleep(0)
        first = asyncio.ensure_future(storage.add_event_row(payload(1)))
        second = asyncio.ensure_future(storage.add_event_row(payload(2)))
        await asyncio.sleep(0)
        assert first.done()  # inline
        assert not second.done()  # another task, same turn: the group commit
        assert await second is True
        assert sorted(stored_actions(path)) == ["a-0", "a-1", "a-2"]


async def test_an_insert_while_another_connection_holds_the_lock_never_blocks_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, other.execute, ("COMMIT",)).start()
        await asyncio.sleep(0)
        started = time.perf_counter()
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        ticking = asyncio.create_task(ticker())
        assert await storage.add_event_row(payload(1)) is True
        waited = time.perf_counter() - started
        ticking.cancel()
        other.close()
        assert waited >= 0.25  # it did wait for the lock: on the thread, not the loop
        assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.2
        assert stored_actions(path) == ["a-0", "a-1"]


async def test_slow_inline_statements_send_inserts_back_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "slow.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        await asyncio.sleep(0)
        monkeypatch.setattr(_sqlite_insert, "_SLOW_STATEMENT", 0.0)  # every statement is slow
        assert finishes_without_suspending(storage.add_event_row(payload(1)))
        await asyncio.sleep(0)
        assert not finishes_without_suspending(storage.add_event_row(payload(2)))
        await storage.add_event_row(payload(3))
        assert stored_actions(path) == ["a-0", "a-1", "a-2", "a-3"]


async def test_the_wal_is_checkpointed_from_the_thread_while_inserts_run_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_insert, "_CHECKPOINT_EVERY", 20)
    path = tmp_path / "wal.db"
    async with at.SQLiteStorage(path) as storage:
        for n in range(600):
            await storage.add_event_row(payload(n))
            if n % 20 == 0:
                await asyncio.sleep(0.01)  # the checkpoint runs on the thread
        wal_pages = path.with_name(path.name + "-wal").stat().st_size // 4096
        assert wal_pages < 200  # one page per commit: 600 without checkpoints
        assert len(stored_actions(path)) == 600


def inserts_on(conn: sqlite3.Connection) -> list[str]:
    """The INSERT statements this connection runs from now on (trace callback)."""
    seen: list[str] = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("INSERT") else None)
    return seen


def rows_per_insert(statements: list[str]) -> list[int]:
    """How many rows each traced INSERT wrote (the test payloads' dest is NULL)."""
    return [sql.count(", NULL)") for sql in statements]


class Traced:
    """What a storage's two connections commit meanwhile: rows on its thread's (and
    the INSERT statements run there) and rows on the inline one."""

    def __init__(self, storage: at.SQLiteStorage) -> None:
        self.storage = storage
        self.on_thread: list[str] = []
        self.thread_rows = 0
        self.inline_rows = 0

    def _inline(self) -> sqlite3.Connection:
        inline = self.storage._inserts._inline
        assert inline is not None
        return inline.conn

    async def __aenter__(self) -> Traced:
        self.on_thread = await self.storage._db.run(inserts_on)
        self.thread_rows = -(await self.storage._db.run(lambda conn: conn.total_changes))
        self.inline_rows = -self._inline().total_changes
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.storage._db.run(lambda conn: conn.set_trace_callback(None))
        self.thread_rows += await self.storage._db.run(lambda conn: conn.total_changes)
        self.inline_rows += self._inline().total_changes


async def test_a_large_group_commit_runs_on_the_storages_thread(tmp_path: Path) -> None:
    path = tmp_path / "group.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        async with Traced(storage) as traced:
            await asyncio.gather(*(storage.add_event_row(payload(n)) for n in range(1, 101)))
        # The first caller of the turn may commit alone, inline; the others share a few
        # multi-row statements on the thread (as many as were queued when it was free).
        assert traced.inline_rows <= 1
        assert traced.thread_rows + traced.inline_rows == 100
        assert len(traced.on_thread) <= 10
        assert sorted(stored_actions(path)) == sorted(f"a-{n}" for n in range(101))


async def test_a_small_group_commit_is_one_statement_on_its_callers_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "small.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        async with Traced(storage) as traced:
            await asyncio.gather(*(storage.add_event_row(payload(n)) for n in range(1, 41)))
        assert (traced.inline_rows, traced.thread_rows) == (40, 0)
        assert sorted(stored_actions(path)) == sorted(f"a-{n}" for n in range(41))


def test_a_group_left_on_a_stopped_loop_does_not_hold_up_later_inserts(tmp_path: Path) -> None:
    """A loop that stops before its group commit ran (its callers gone with it): the
    next insert, from another loop, takes that group over instead of waiting for it."""
    path = tmp_path / "stopped.db"
    storage = at.SQLiteStorage(path)
    second = storage.add_event_row(payload(2))  # stepped by hand: no task outlives the loop
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(storage.open())
        loop.call_soon(loop.stop)  # the loop ends after this turn, before the group's
        first = loop.create_task(storage.add_event_row(payload(1)))  # inline
        loop.call_soon(second.send, None)  # a second caller in the turn: the group
        loop.run_forever()
        assert first.done()
    finally:
        loop.close()

    async def later() -> None:
        await asyncio.wait_for(storage.add_event_row(payload(3)), 5)
        await storage.aclose()

    asyncio.run(later())
    second.close()
    assert sorted(stored_actions(path)) == ["a-1", "a-2", "a-3"]


@pytest.mark.parametrize("reason", ["watchdog paused", "file locked"])
async def test_a_paused_or_locked_inline_connection_sends_lone_inserts_to_the_thread(
    tmp_path: Path, reason: str
) -> None:
    path = tmp_path / "paused.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        inline = storage._inserts._inline
        assert inline is not None
        other = None
        if reason == "watchdog paused":
            inline._paused_until = time.perf_counter() + 60
        else:
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
            threading.Timer(0.2, other.execute, ("COMMIT",)).start()
        async with Traced(storage) as traced:
            for n in range(1, 6):
                await asyncio.sleep(0)
                assert await storage.add_event_row(payload(n)) is True
        if other is not None:
            other.close()
        if reason == "watchdog paused":
            assert (traced.inline_rows, traced.thread_rows) == (0, 5)
        else:  # the first waited for the lock on the thread; the rest found it free
            assert traced.thread_rows >= 1
            assert traced.inline_rows + traced.thread_rows == 5
        assert stored_actions(path) == [f"a-{n}" for n in range(6)]


async def test_threads_without_a_loop_commit_inline_each_counted_once(tmp_path: Path) -> None:
    """The sync API's path: insert_blocking from plain threads, never a loop. A thread
    waits briefly for another thread's inline insert, then commits its own."""
    path = tmp_path / "threads.db"
    counted: list[int] = []
    async with at.SQLiteStorage(path) as storage:

        def insert(n: int) -> None:
            done = storage.insert_blocking([payload(n)], None, lambda o: counted.append(o.stored))
            assert done.stored == 1

        await asyncio.to_thread(insert, 0)  # alone: inline, on that thread
        async with Traced(storage) as traced:
            workers = [
                threading.Thread(target=lambda k=k: [insert(k * 100 + i) for i in range(50)])
                for k in range(1, 9)
            ]
            for worker in workers:
                worker.start()
            await asyncio.to_thread(lambda: [worker.join() for worker in workers])
        await asyncio.sleep(0.05)  # the listeners run on this loop
        assert sum(counted) == 401
        assert traced.inline_rows + traced.thread_rows == 400
        assert len(stored_actions(path)) == 401


async def test_a_thread_kept_from_the_inline_connection_joins_a_group_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "held.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        inline = storage._inserts._inline
        assert inline is not None
        gate = inline.conn.in_gate()
        async with Traced(storage) as traced:
            with gate:  # held far longer than a thread waits for it
                done = await asyncio.to_thread(
                    storage.insert_blocking, [payload(1)], None, lambda outcome: None
                )
        assert done.stored == 1
        assert (traced.inline_rows, traced.thread_rows) == (0, 1)
        assert stored_actions(path) == ["a-0", "a-1"]


async def test_closing_closes_the_inline_connection(tmp_path: Path) -> None:
    storage = at.SQLiteStorage(tmp_path / "close.db")
    await storage.add_event_row(payload(0))
    inline = storage._inserts._inline
    assert inline is not None
    await storage.aclose()
    assert storage._inserts._inline is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not left for the collector
        inline.conn.execute("SELECT 1")
