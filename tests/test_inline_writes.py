"""SQLiteStorage commits a lone caller's insert on the loop's thread, and never waits there.

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
from asynctracker.storage import _inline


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


async def test_a_second_caller_in_the_same_turn_shares_the_threads_group_commit(
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
        assert not second.done()  # another task, same turn: the thread
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
        monkeypatch.setattr(_inline, "_SLOW_STATEMENT", 0.0)  # every statement is slow
        assert finishes_without_suspending(storage.add_event_row(payload(1)))
        await asyncio.sleep(0)
        assert not finishes_without_suspending(storage.add_event_row(payload(2)))
        await storage.add_event_row(payload(3))
        assert stored_actions(path) == ["a-0", "a-1", "a-2", "a-3"]


async def test_the_wal_is_checkpointed_from_the_thread_while_inserts_run_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_inline, "_CHECKPOINT_EVERY", 20)
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


async def test_concurrent_callers_share_one_insert_on_the_loops_thread(tmp_path: Path) -> None:
    """A group commit small enough is one statement on the loop-thread connection:
    its callers' loop would only wait for the trip to the thread."""
    path = tmp_path / "group.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        assert storage._conn is not None
        assert storage._inline is not None
        conn = storage._conn
        on_thread = await conn.call(inserts_on, conn.db)  # traced on the storage's thread
        on_loop: list[str] = []
        thread_ids: set[int] = set()

        def on_inline_conn(sql: str) -> None:
            if sql.startswith("INSERT"):
                on_loop.append(sql)
                thread_ids.add(threading.get_ident())

        storage._inline._conn.set_trace_callback(on_inline_conn)
        await asyncio.gather(*(storage.add_event_row(payload(n)) for n in range(1, 41)))
        await conn.call(conn.db.set_trace_callback, None)
        storage._inline._conn.set_trace_callback(None)
        assert on_thread == []
        # The first caller of the turn commits alone, the other 39 in one statement.
        assert rows_per_insert(on_loop) == [1, 39]
        assert thread_ids == {threading.get_ident()}
        assert sorted(stored_actions(path)) == sorted(f"a-{n}" for n in range(41))


@pytest.mark.parametrize("reason", ["large group", "watchdog paused", "file locked"])
async def test_a_large_locked_or_slow_group_commit_goes_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    path = tmp_path / "group.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload(0))
        assert storage._conn is not None
        assert storage._inline is not None
        conn = storage._conn
        on_thread = await conn.call(inserts_on, conn.db)  # traced on the storage's thread
        committed_on_loop = inserts_on(storage._inline._conn)
        other = None
        if reason == "large group":
            monkeypatch.setattr(_inline, "_GROUP_ROWS", 10)
        elif reason == "watchdog paused":
            storage._inline._paused_until = time.perf_counter() + 60
        else:
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
            threading.Timer(0.2, other.execute, ("COMMIT",)).start()
        await asyncio.gather(*(storage.add_event_row(payload(n)) for n in range(1, 41)))
        await conn.call(conn.db.set_trace_callback, None)
        storage._inline._conn.set_trace_callback(None)
        if other is not None:
            other.close()
        assert sum(rows_per_insert(on_thread)) >= 39
        if reason != "file locked":  # there the inline attempts failed: nothing committed
            assert max(rows_per_insert(committed_on_loop), default=0) <= 1
        assert sorted(stored_actions(path)) == sorted(f"a-{n}" for n in range(41))


async def test_closing_closes_the_loop_thread_connection_even_when_draining_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = at.SQLiteStorage(tmp_path / "close.db")
    await storage.add_event_row(payload(0))
    inline = storage._inline
    assert inline is not None

    async def broken_drain() -> None:
        raise RuntimeError("the writer failed")

    monkeypatch.setattr(storage._group, "drain", broken_drain)
    with pytest.raises(RuntimeError):
        await storage.aclose()
    assert storage._inline is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not left for the collector
        inline._conn.execute("SELECT 1")
