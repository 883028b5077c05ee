"""Delivery under faults, against a real collector on 127.0.0.1 and real SQLite files.

Nothing here calls track_* again to "unstick" delivery: after a fault, the emitter's own
backoff timer must finish the job. Retry timings are shortened through RetryPolicy so
the suite stays quick; the behaviour is the same with the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from iglu import check_received

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply

FAST_RETRY = at.RetryPolicy(backoff_base=0.05, backoff_cap=0.3)


@asynccontextmanager
async def tracker_for(
    url: str, db_path: Path, **emitter_options: object
) -> AsyncIterator[at.Tracker]:
    options: dict[str, object] = {"retry": FAST_RETRY, **emitter_options}
    emitter = at.Emitter(url, db_name=db_path, **options)  # type: ignore[arg-type]
    async with at.Tracker(emitter, app_id="reliability") as tracker:
        yield tracker


async def track_many(tracker: at.Tracker, count: int, *, label: str = "x") -> list[str]:
    eids: list[str] = []
    for start in range(0, count, 250):
        eids += await asyncio.gather(
            *(
                tracker.track_struct_event("test", "burst", label=label, value=i)
                for i in range(start, min(start + 250, count))
            )
        )
    return eids


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def received_eids(collector: Collector) -> Counter[str]:
    return Counter(event.payload["eid"] for event in collector.events)


def stored_count(db_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


# -- retries ---------------------------------------------------------------------------


async def test_ten_percent_500s_deliver_every_event_once_without_new_calls(
    collector: Collector, db_path: Path
) -> None:
    chance = random.Random(7)
    collector.responder = lambda request: Reply(500) if chance.random() < 0.10 else None

    async with tracker_for(collector.url, db_path, byte_limit_post=4000) as tracker:
        eids = await track_many(tracker, 3000)
        await wait_until(lambda: len(collector.events) >= 3000)

    assert any(request.status == 500 for request in collector.requests)
    counts = received_eids(collector)
    assert set(counts) == set(eids)
    assert max(counts.values()) == 1
    check_received(collector.events[:50])


async def test_outage_then_restart_on_same_port_delivers_everything(
    collector: Collector, db_path: Path
) -> None:
    async with tracker_for(collector.url, db_path) as tracker:
        before = await track_many(tracker, 300, label="before")
        await collector.stop()
        during = await track_many(tracker, 300, label="during")
        await asyncio.sleep(1.5)  # several failed retries while the port is closed
        assert tracker.emitter.stats().failed > 0
        await collector.start()
        await wait_until(lambda: len(collector.events) >= 600)

    counts = received_eids(collector)
    assert set(counts) == set(before + during)
    assert max(counts.values()) == 1
    assert stored_count(db_path) == 0


async def test_total_failure_keeps_rows_and_retries_on_a_timer(
    collector: Collector, db_path: Path
) -> None:
    failing = True
    collector.responder = lambda request: Reply(503) if failing else None
    async with tracker_for(collector.url, db_path) as tracker:
        eids = await track_many(tracker, 50)
        assert await tracker.flush() == 50
        assert stored_count(db_path) == 50
        failing = False
        await wait_until(lambda: len(collector.events) >= 50)
        assert sorted(received_eids(collector)) == sorted(eids)


async def test_400_drops_and_reports_while_500_keeps(collector: Collector, db_path: Path) -> None:
    results: list[tuple[list[at.CallbackResult], list[at.CallbackResult]]] = []
    status = 400
    collector.responder = lambda request: Reply(status)

    def callback(ok: list[at.CallbackResult], bad: list[at.CallbackResult]) -> None:
        results.append((ok, bad))

    async with tracker_for(collector.url, db_path, callback=callback) as tracker:
        await track_many(tracker, 10)
        assert await tracker.flush() == 0
        assert tracker.emitter.stats().dropped == 10
        assert results[-1] == ([], [at.CallbackResult(10, 400, dropped=True)])

        status = 500
        await track_many(tracker, 10)
        assert await tracker.flush() == 10
        assert results[-1] == ([], [at.CallbackResult(10, 500)])
        assert tracker.emitter.stats().dropped == 10


async def test_non_retryable_statuses_are_configurable(collector: Collector, db_path: Path) -> None:
    collector.responder = lambda request: Reply(400)
    policy = at.RetryPolicy(backoff_base=0.05, non_retryable_statuses=frozenset({418}))
    async with tracker_for(collector.url, db_path, retry=policy) as tracker:
        await track_many(tracker, 5)
        assert await tracker.flush() == 5  # 400 is retryable under this policy


async def test_max_attempts_one_switches_retrying_off(collector: Collector, db_path: Path) -> None:
    collector.responder = lambda request: Reply(500)
    policy = at.RetryPolicy(max_attempts=1)
    async with tracker_for(collector.url, db_path, retry=policy) as tracker:
        await track_many(tracker, 5)
        assert await tracker.flush() == 0
        assert tracker.emitter.stats().dropped == 5


async def test_413_splits_the_batch_until_the_collector_accepts(
    collector: Collector, db_path: Path
) -> None:
    collector.responder = lambda request: Reply(413) if len(request.body) > 3000 else None
    async with tracker_for(collector.url, db_path) as tracker:
        eids = await track_many(tracker, 200)
        assert await tracker.flush() == 0

    assert sorted(received_eids(collector)) == sorted(eids)
    assert any(request.status == 413 for request in collector.requests)
    assert all(len(r.body) <= 3000 for r in collector.requests if r.status == 200)
    assert tracker.emitter.stats().dropped == 0


async def test_single_event_refused_as_too_large_is_dropped_not_retried_forever(
    collector: Collector, db_path: Path
) -> None:
    collector.responder = lambda request: Reply(413) if b"huge" in request.body else None
    failures: list[at.CallbackResult] = []
    async with tracker_for(
        collector.url, db_path, callback=lambda ok, bad: failures.extend(bad)
    ) as tracker:
        small = await track_many(tracker, 20)
        await tracker.track_struct_event("test", "big", label="huge" * 1000)
        assert await tracker.flush() == 0

    assert sorted(received_eids(collector)) == sorted(small)
    assert at.CallbackResult(1, 413, dropped=True) in failures


async def test_retry_after_is_respected(collector: Collector, db_path: Path) -> None:
    seen: list[float] = []

    def responder(request: ReceivedRequest) -> Reply | None:
        seen.append(time.monotonic())
        return Reply(429, {"Retry-After": "1"}) if len(seen) == 1 else None

    collector.responder = responder
    async with tracker_for(collector.url, db_path) as tracker:
        await tracker.track_struct_event("test", "limited")
        await wait_until(lambda: len(collector.events) == 1)

    assert seen[1] - seen[0] >= 0.95


# -- time limits -----------------------------------------------------------------------


def hang_forever() -> Callable[[ReceivedRequest], Awaitable[Reply | None]]:
    async def responder(request: ReceivedRequest) -> Reply | None:
        await asyncio.Event().wait()
        return None

    return responder


async def test_flush_with_timeout_returns_on_time_when_the_collector_hangs(
    collector: Collector, db_path: Path
) -> None:
    collector.responder = hang_forever()
    async with tracker_for(collector.url, db_path, close_timeout=0.2) as tracker:
        await track_many(tracker, 20)
        started = time.monotonic()
        left = await tracker.flush(timeout=0.3)
        assert time.monotonic() - started < 2.0
        assert left == 20
        started = time.monotonic()
    assert time.monotonic() - started < 2.0  # leaving `async with` is bounded too
    assert stored_count(db_path) == 20  # claims released, rows kept for the next emitter


async def test_cancelling_track_calls_never_corrupts_storage(
    collector: Collector, db_path: Path
) -> None:
    async with tracker_for(collector.url, db_path) as tracker:
        tasks = [
            asyncio.create_task(tracker.track_struct_event("test", "cancel", value=i))
            for i in range(400)
        ]
        await asyncio.sleep(0)
        for task in tasks[::3]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        returned = {eid for eid in done if isinstance(eid, str)}
        assert await tracker.flush() == 0

    counts = received_eids(collector)
    assert returned <= set(counts)
    assert max(counts.values()) == 1
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- bounds and visibility -------------------------------------------------------------


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [
        pytest.param("drop_oldest", range(5, 10), id="drop-oldest-keeps-newest"),
        pytest.param("drop_newest", range(0, 5), id="drop-newest-keeps-oldest"),
    ],
)
async def test_full_queue_drops_by_policy_and_reports(
    db_path: Path, overflow: str, kept: range
) -> None:
    failures: list[at.CallbackResult] = []
    async with tracker_for(
        "http://127.0.0.1:9",  # discard port: nothing listens, every send fails
        db_path,
        max_events=5,
        overflow=overflow,
        callback=lambda ok, bad: failures.extend(bad),
        retry=at.RetryPolicy(backoff_base=30, backoff_cap=60),
        close_timeout=0,
    ) as tracker:
        # A first send fails (nothing listens) and starts the 30 s backoff, so no row is
        # in flight while the queue overflows: drop_oldest never drops rows being sent.
        await tracker.track_struct_event("test", "overflow", value=0)
        assert await tracker.flush(timeout=5) == 1
        for value in range(1, 10):
            await tracker.track_struct_event("test", "overflow", value=value)
        rows = await tracker.emitter.storage.get_all_event_rows()
        assert [row.event["se_va"] for row in rows] == [str(v) for v in kept]
        assert tracker.emitter.stats().dropped == 5
        assert sum(f.count for f in failures if f.dropped and f.status == 0) == 5


async def test_full_queue_with_raise_policy_raises_and_keeps_everything(db_path: Path) -> None:
    async with tracker_for(
        "http://127.0.0.1:9",
        db_path,
        max_events=3,
        overflow="raise",
        retry=at.RetryPolicy(backoff_base=30, backoff_cap=60),
        close_timeout=0,
    ) as tracker:
        for _ in range(3):
            await tracker.track_page_view("https://acme.test/")
        with pytest.raises(at.QueueFullError):
            await tracker.track_page_view("https://acme.test/overflow")
        assert len(await tracker.emitter.storage.get_all_event_rows()) == 3
        assert tracker.emitter.stats().dropped == 0


async def test_stats_count_sent_failed_and_retried(collector: Collector, db_path: Path) -> None:
    calls = 0

    def responder(request: ReceivedRequest) -> Reply | None:
        nonlocal calls
        calls += 1
        return Reply(500) if calls == 1 else None

    collector.responder = responder
    async with tracker_for(collector.url, db_path) as tracker:
        await track_many(tracker, 10)
        await wait_until(lambda: len(collector.events) == 10)
        await tracker.flush()
        stats = tracker.emitter.stats()
    assert (stats.sent, stats.queued, stats.dropped) == (10, 0, 0)
    assert stats.failed == stats.retried > 0


async def test_callback_exception_is_logged_and_delivery_continues(
    collector: Collector, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ok: list[at.CallbackResult], bad: list[at.CallbackResult]) -> None:
        raise RuntimeError("user bug")

    async with tracker_for(collector.url, db_path, callback=broken, send_limit=5) as tracker:
        eids = await track_many(tracker, 20)
        assert await tracker.flush() == 0
    assert sorted(received_eids(collector)) == sorted(eids)
    assert "callback raised" in caplog.text


async def test_async_callback_is_awaited(collector: Collector, db_path: Path) -> None:
    seen: list[int] = []

    async def callback(ok: list[at.CallbackResult], bad: list[at.CallbackResult]) -> None:
        await asyncio.sleep(0)
        seen.extend(result.count for result in ok)

    async with tracker_for(collector.url, db_path, callback=callback) as tracker:
        await track_many(tracker, 7)
        await tracker.flush()
    assert sum(seen) == 7


# -- broken databases ------------------------------------------------------------------


async def test_locked_database_raises_storage_error_and_keeps_rows(
    collector: Collector, db_path: Path
) -> None:
    storage = at.SQLiteStorage(db_path, busy_timeout=0.2)
    emitter = at.Emitter(collector.url, storage=storage, retry=FAST_RETRY)
    async with at.Tracker(emitter) as tracker:
        collector.responder = hang_forever()  # keep the first rows stored
        await tracker.track_page_view("https://acme.test/1")
        blocker = sqlite3.connect(db_path, timeout=0.1, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(at.StorageError, match="locked"):
                await tracker.track_page_view("https://acme.test/2")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        collector.responder = None
        await tracker.track_page_view("https://acme.test/3")
        await wait_until(lambda: len(collector.events) == 2)
    assert sorted(e.payload["url"] for e in collector.events) == [
        "https://acme.test/1",
        "https://acme.test/3",
    ]


def test_corrupt_database_raises_storage_error_and_is_not_overwritten(db_path: Path) -> None:
    garbage = b"this is not a database" * 100
    db_path.write_bytes(garbage)
    asyncio.run(_track_into_corrupt_file(db_path))
    assert db_path.read_bytes() == garbage


async def _track_into_corrupt_file(db_path: Path) -> None:
    emitter = at.Emitter("http://127.0.0.1:9", db_name=db_path)
    tracker = at.Tracker(emitter)
    with pytest.raises(at.StorageError, match="not a database"):
        await tracker.track_page_view("https://acme.test/")
    await tracker.aclose()


async def test_unwritable_location_raises_storage_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    emitter = at.Emitter("http://127.0.0.1:9", db_name=not_a_dir / "events.db")
    with pytest.raises(at.StorageError, match="cannot be opened"):
        async with emitter:
            pass
    await emitter.aclose()
