"""A tracker follows the event loop it is used from, one loop at a time.

A tracker made at import time outlives ``asyncio.run``: scripts call it twice, sync
frameworks wrap each job in its own loop. Each ``asyncio.run`` below runs in a worker
thread (``asyncio.to_thread``), so that the real collector keeps serving on the test's
own loop meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply

StorageFactory = Callable[[Path], at.Storage]
STORAGES: dict[str, StorageFactory] = {
    "sqlite": lambda db_path: at.SQLiteStorage(db_path),
    "memory": lambda db_path: at.MemoryStorage(),
}


@pytest.fixture(params=sorted(STORAGES))
def storage(request: pytest.FixtureRequest, db_path: Path) -> at.Storage:
    return STORAGES[request.param](db_path)


@pytest.fixture
def thread_crashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that ended a thread (aiosqlite's dies replying to a closed loop)."""
    crashes: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(repr(args)))
    return crashes


async def in_new_loop(work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work`` in a fresh event loop of its own, closed when it returns."""
    return await asyncio.to_thread(asyncio.run, work())  # type: ignore[arg-type]


def received(collector: Collector) -> Counter[str]:
    return Counter(event.payload["eid"] for event in collector.events)


async def test_one_tracker_serves_loop_after_loop(
    collector: Collector, storage: at.Storage, thread_crashes: list[str]
) -> None:
    tracker = at.Tracker(at.Emitter(collector.url, storage=storage))

    async def track_and_flush() -> tuple[list[str], int]:
        eids = [await tracker.track_struct_event("loop", "run", str(n)) for n in range(5)]
        return eids, await tracker.flush(timeout=10)

    first, left_first = await in_new_loop(track_and_flush)
    second, left_second = await in_new_loop(track_and_flush)
    await in_new_loop(tracker.emitter.aclose)
    if isinstance(storage, at.SQLiteStorage):
        # The storage is bound to no loop: it stays open from one loop to the next,
        # and closing it closes the file (SQLite removes the WAL on the last close).
        assert not await asyncio.to_thread(Path(f"{storage.path}-wal").exists)
    assert (left_first, left_second) == (0, 0)
    assert received(collector) == Counter(first + second)
    assert thread_crashes == []


async def test_a_send_cut_off_by_the_end_of_a_loop_is_sent_by_the_next(
    collector: Collector, storage: at.Storage
) -> None:
    # The first POST never gets an answer, and its loop ends meanwhile: the rows it had
    # claimed must not stay claimed (MemoryStorage: forever; SQLite: until claim_ttl).
    arrived = threading.Event()

    async def hang_the_first_request(request: ReceivedRequest) -> Reply | None:
        if not arrived.is_set():
            arrived.set()
            await asyncio.Event().wait()
        return None

    collector.responder = hang_the_first_request
    tracker = at.Tracker(at.Emitter(collector.url, storage=storage))

    async def track_and_leave_mid_send() -> list[str]:
        eids = [await tracker.track_struct_event("loop", "cut", str(n)) for n in range(5)]
        assert await asyncio.to_thread(arrived.wait, 10)
        return eids  # asyncio.run now cancels the send task, its POST unanswered

    tracked = await in_new_loop(track_and_leave_mid_send)
    assert collector.events == []

    async def flush_and_close() -> int:
        left = await tracker.flush(timeout=10)
        await tracker.emitter.aclose()
        return left

    assert await in_new_loop(flush_and_close) == 0
    assert received(collector) == Counter(tracked)


async def test_a_tracker_in_use_on_another_running_loop_is_refused(
    collector: Collector, storage: at.Storage
) -> None:
    tracker = at.Tracker(at.Emitter(collector.url, storage=storage))
    other = asyncio.new_event_loop()
    runner = threading.Thread(target=other.run_forever)
    runner.start()
    try:
        on_other = asyncio.run_coroutine_threadsafe(tracker.track_struct_event("a", "b"), other)
        eid = await asyncio.wrap_future(on_other)
        with pytest.raises(at.ConfigurationError, match="another running event loop"):
            await tracker.track_struct_event("a", "b")
        closing = asyncio.run_coroutine_threadsafe(tracker.__aexit__(None, None, None), other)
        await asyncio.wrap_future(closing)  # flushes, then closes
    finally:
        other.call_soon_threadsafe(other.stop)
        await asyncio.to_thread(runner.join, 10)
        other.close()
    assert received(collector) == Counter([eid])
