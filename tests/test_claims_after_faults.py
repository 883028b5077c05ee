"""Claimed rows after a failed release or a failed delete come back to the live process.

Real SQLite files and a real collector on 127.0.0.1. The fault: another sqlite3
connection holds the file's write lock (``BEGIN IMMEDIATE``) past the storage's busy
timeout just when the emitter settles a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply
from asynctracker.storage import _sqlite_claims

FAST_RETRY = at.RetryPolicy(backoff_base=0.05, backoff_cap=0.3)
LOCK_HELD = 0.8  # seconds: past two busy timeouts (the settle and its fallback)


def stored_count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class LockOnFirstRequest:
    """A responder: answers the first request with ``first_status`` and takes the
    write lock for LOCK_HELD seconds at that moment; later requests get a 200."""

    def __init__(self, path: Path, first_status: int) -> None:
        self.path = path
        self.first_status = first_status
        self.requests = 0
        self.released = asyncio.Event()

    def __call__(self, request: ReceivedRequest) -> Reply | None:
        self.requests += 1
        if self.requests > 1:
            return None
        other = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")

        def release() -> None:
            other.execute("COMMIT")
            other.close()
            self.released.set()

        asyncio.get_running_loop().call_later(LOCK_HELD, release)
        return Reply(self.first_status) if self.first_status != 200 else None


async def track(tracker: at.Tracker, count: int) -> list[str]:
    return list(
        await asyncio.gather(*(tracker.track_struct_event("c", "a", value=i) for i in range(count)))
    )


def tracker_locked_on_first_request(
    collector: Collector, path: Path, first_status: int
) -> tuple[LockOnFirstRequest, at.Tracker]:
    """A tracker on ``path`` whose collector answers its first request with
    ``first_status`` while another connection takes the write lock (see
    LockOnFirstRequest), past the storage's busy timeout."""
    responder = LockOnFirstRequest(path, first_status)
    collector.responder = responder
    storage = at.SQLiteStorage(path, busy_timeout=0.2)
    emitter = at.Emitter(collector.url, storage=storage, retry=FAST_RETRY)
    return responder, at.Tracker(emitter, app_id="faults")


async def test_rows_whose_release_failed_are_sent_again_by_the_same_process(
    collector: Collector, tmp_path: Path
) -> None:
    path = tmp_path / "release.db"
    responder, tracker = tracker_locked_on_first_request(collector, path, 500)
    async with tracker:
        eids = await track(tracker, 100)
        await tracker.flush(timeout=5)
        await responder.released.wait()
        # No new track_* call: the emitter's own retry must send the rows again.
        await wait_until(lambda: len(collector.events) >= 100)
        assert await tracker.flush(timeout=5) == 0
    received = Counter(event.payload["eid"] for event in collector.events)
    assert set(received) == set(eids)
    assert stored_count(path) == 0


async def test_rows_whose_delete_failed_after_a_200_are_deleted_not_sent_again(
    collector: Collector, tmp_path: Path
) -> None:
    path = tmp_path / "delete.db"
    responder, tracker = tracker_locked_on_first_request(collector, path, 200)
    async with tracker:
        eids = await track(tracker, 100)
        await tracker.flush(timeout=5)
        await responder.released.wait()
        await wait_until(lambda: stored_count(path) == 0)
    # A later process on the same file has nothing to resend.
    async with at.Tracker(
        at.Emitter(collector.url, storage=at.SQLiteStorage(path), retry=FAST_RETRY)
    ) as later:
        assert await later.flush(timeout=5) == 0
    received = Counter(event.payload["eid"] for event in collector.events)
    assert set(received) == set(eids)
    assert max(received.values()) == 1


async def test_an_expired_claim_comes_back_to_the_process_that_made_it(tmp_path: Path) -> None:
    async with at.SQLiteStorage(tmp_path / "expired.db", claim_ttl=0.2) as storage:
        await storage.add_event_rows([{"e": "pv", "n": str(n)} for n in range(10)])
        claimed = await storage.claim_event_rows(10)
        assert len(claimed) == 10
        assert await storage.claim_event_rows(10) == []  # still claimed
        await asyncio.sleep(0.3)
        assert await storage.reclaim_abandoned_rows() == 10
        assert [row.id for row in await storage.claim_event_rows(10)] == [row.id for row in claimed]


async def test_the_file_shrinks_once_a_large_backlog_is_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_claims, "_VACUUM_AFTER_DELETES", 1000)
    monkeypatch.setattr(_sqlite_claims, "_VACUUM_MIN_FREE", 16)
    path = tmp_path / "shrink.db"
    async with at.SQLiteStorage(path) as storage:
        filler = "x" * 500
        await storage.add_event_rows([{"e": "pv", "url": filler} for _ in range(5000)])
    full = path.stat().st_size  # closed: every page is in the file now
    async with at.SQLiteStorage(path) as storage:
        while rows := await storage.claim_event_rows(500):
            await storage.delete_event_rows([row.id for row in rows])
        assert await storage.claim_event_rows(500) == []
    assert path.stat().st_size < full / 10
