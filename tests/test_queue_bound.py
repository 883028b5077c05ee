"""max_events bounds the queue exactly: under gathered bursts, across processes sharing a
file, when the oldest events are being sent, and for cancelled calls.

Real collectors on 127.0.0.1 (or a closed port, for a collector that is down) and real
SQLite files.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import asynctracker as at
from asynctracker._rowstore import Bound, Stored
from asynctracker.collector import Collector, ReceivedRequest, Reply


async def test_drop_oldest_drops_new_events_when_every_stored_event_is_being_sent(
    collector: Collector, tmp_path: Path
) -> None:
    received = asyncio.Event()
    answer = asyncio.Event()

    async def hold_first_request(request: ReceivedRequest) -> Reply | None:
        received.set()
        await answer.wait()
        return None

    collector.responder = hold_first_request
    dropped: list[at.CallbackResult] = []
    emitter = at.Emitter(
        collector.url,
        storage=at.SQLiteStorage(tmp_path / "bound.db"),
        max_events=5,
        overflow="drop_oldest",
        callback=lambda ok, bad: dropped.extend(r for r in bad if r.dropped),
    )
    async with at.Tracker(emitter, app_id="bound") as tracker:
        for value in range(5):
            await tracker.track_struct_event("c", "kept", value=value)
        await asyncio.wait_for(received.wait(), 5)  # all five are in flight now
        for value in range(3):
            await tracker.track_struct_event("c", "over", value=value)
        assert len(await emitter.storage.get_all_event_rows()) == 5
        assert emitter.stats().dropped == 3
        assert sum(result.count for result in dropped if result.status == 0) == 3
        answer.set()
        assert await tracker.flush(timeout=5) == 0
    assert sorted(event.payload["se_ac"] for event in collector.events) == ["kept"] * 5


# -- issue 19, row 1: the bound is exact under bursts and across processes -----------------

DOWN = "http://127.0.0.1:9"  # nothing listens: every send fails, every event stays
NO_RETRY = at.RetryPolicy(auto_retry=False)


def stored_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def bounded_emitter(kind: str, tmp_path: Path, overflow: str, **options: Any) -> at.Emitter:
    storage = at.MemoryStorage() if kind == "memory" else at.SQLiteStorage(tmp_path / "b.db")
    return at.Emitter(
        DOWN, storage=storage, max_events=1000, overflow=overflow, retry=NO_RETRY, **options
    )


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_drop_oldest_drops_exactly_what_is_due_under_gathered_bursts(
    tmp_path: Path, kind: str
) -> None:
    reports: list[at.CallbackResult] = []
    emitter = bounded_emitter(
        kind, tmp_path, "drop_oldest", callback=lambda ok, bad: reports.extend(bad)
    )
    async with at.Tracker(emitter) as tracker:
        await asyncio.gather(*(tracker.track_struct_event("c", "fill") for _ in range(950)))
        for burst in range(3):
            await asyncio.gather(
                *(tracker.track_struct_event("c", f"b{burst}") for _ in range(1000))
            )
        await tracker.flush(timeout=1)
        # 950 + 3,000 tracked, 1,000 kept: 2,950 dropped, the oldest ones.
        assert emitter.stats().dropped == 2950
        assert sum(r.count for r in reports if r.reason == "overflow") == 2950
        kept = [row.event["se_ac"] for row in await emitter.storage.get_all_event_rows()]
        assert len(kept) == 1000
        # The newest burst, but for rows a send had claimed meanwhile (never dropped).
        assert kept.count("b2") >= 1000 - emitter.send_limit


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
@pytest.mark.parametrize("overflow", ["raise", "drop_newest"])
async def test_raise_and_drop_newest_refuse_exactly_the_excess_of_a_burst(
    tmp_path: Path, kind: str, overflow: str
) -> None:
    emitter = bounded_emitter(kind, tmp_path, overflow)
    async with at.Tracker(emitter) as tracker:
        await asyncio.gather(*(tracker.track_struct_event("c", "fill") for _ in range(900)))
        results = await asyncio.gather(
            *(tracker.track_struct_event("c", "burst") for _ in range(500)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, BaseException)]
        if overflow == "raise":
            assert len(refused) == 400
            assert all(isinstance(r, at.QueueFullError) for r in refused)
            assert emitter.stats().dropped == 0
        else:
            assert refused == []
            assert emitter.stats().dropped == 400
        assert len(await emitter.storage.get_all_event_rows()) == 1000


async def test_the_bound_holds_for_processes_sharing_a_file(tmp_path: Path) -> None:
    """Two processes, each with max_events=1000, each tracking 1,000 events in gathered
    bursts into one file while the collector is down: the file never holds more."""
    path = tmp_path / "shared.db"
    script = (
        "import asyncio, sys\n"
        "import asynctracker as at\n"
        "async def main():\n"
        f"    emitter = at.Emitter({DOWN!r}, db_name=sys.argv[1], max_events=1000,\n"
        "        retry=at.RetryPolicy(auto_retry=False), close_timeout=0)\n"
        "    async with at.Tracker(emitter) as tracker:\n"
        "        for _ in range(10):\n"
        "            calls = (tracker.track_struct_event('c', 'p') for _ in range(100))\n"
        "            await asyncio.gather(*calls)\n"
        "    print(emitter.stats().dropped)\n"
        "asyncio.run(main())\n"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(path), stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(proc.communicate(), 60) for proc in procs]
    dropped = sum(int(out.decode()) for out, _ in outputs)
    assert all(proc.returncode == 0 for proc in procs)
    assert stored_rows(path) == 1000
    assert dropped == 1000  # 2,000 tracked, 1,000 kept: every drop counted once


def counts(path: Path) -> tuple[int, int]:
    """The count the bound reads in constant time, and SQLite's own count(*)."""
    from asynctracker.storage._sqlite_schema import COUNT

    with contextlib.closing(sqlite3.connect(path)) as conn:
        (constant_time,) = conn.execute(COUNT).fetchone()
        (counted,) = conn.execute("SELECT count(*) FROM events").fetchone()
    return int(constant_time), int(counted)


def event(n: int) -> dict[str, str]:
    return {"e": "se", "se_ca": "c", "se_ac": f"a-{n}", "eid": str(uuid.uuid4())}


async def test_the_bounds_count_follows_every_delete_of_the_storage(tmp_path: Path) -> None:
    """Deletes from the middle, the oldest, claimed rows, everything: the constant-time
    count equals count(*) after each."""
    path = tmp_path / "count.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_rows([event(n) for n in range(100)])
        ids = [row.id for row in await storage.get_all_event_rows()]
        await storage.delete_event_rows(ids[10:20] + ids[50:51])  # holes in the middle
        assert counts(path) == (89, 89)
        await storage.delete_oldest_event_rows(15)  # across the first hole
        assert counts(path) == (74, 74)
        claimed = await storage.claim_event_rows(30)
        await storage.delete_claimed_rows([row.id for row in claimed[::3]])
        assert counts(path) == (64, 64)
        await storage.add_event_rows([event(n) for n in range(5)])
        assert counts(path) == (69, 69)
        await storage.delete_all_event_rows()
        assert counts(path) == (0, 0)


async def test_a_delete_by_other_code_makes_the_count_read_high_until_the_queue_empties(
    tmp_path: Path,
) -> None:
    """A sqlite3 shell (or an earlier version) deleting from the middle leaves the count
    high, so the bound refuses early and is never exceeded; once the queue is empty the
    count is exact again."""
    path = tmp_path / "foreign.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_rows([event(n) for n in range(10)])
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DELETE FROM events WHERE id IN (3, 4, 5)")
        constant_time, counted = counts(path)
        assert (constant_time, counted) == (10, 7)
        row_store: Any = storage  # the emitter's insert, under a bound of 10
        done = row_store.insert([event(10)], Bound(10, "raise"), lambda outcome: None)
        outcome = done if isinstance(done, Stored) else await done
        assert outcome.refused_by == "raise"
        assert counts(path) == (10, 7)
        await storage.delete_all_event_rows()
        await storage.add_event_rows([event(n) for n in range(3)])
        assert counts(path) == (3, 3)


# -- issue 19, row 2: a cancelled track_* whose row is committed is counted and sent -------


@pytest.mark.parametrize(
    "options", [{"synchronous": "FULL"}, {"inline_writes": False}], ids=["FULL", "thread-only"]
)
async def test_rows_of_cancelled_calls_are_counted_and_sent_without_another_call(
    collector: Collector, tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "cancel.db"
    emitter = at.Emitter(collector.url, storage=at.SQLiteStorage(path, **options))
    async with at.Tracker(emitter) as tracker:
        calls = [asyncio.create_task(tracker.track_struct_event("c", f"a{n}")) for n in range(200)]
        await asyncio.sleep(0)  # every call has queued its row for the group commit
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        # No further call: whatever was committed must arrive by itself.
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            if stored_rows(path) == 0 and emitter.stats().queued == 0:
                break
            await asyncio.sleep(0.05)
        assert stored_rows(path) == 0
        assert emitter.stats().queued == 0
        assert emitter.stats().sent == len(collector.events)
    eids = [event.payload["eid"] for event in collector.events]
    assert len(eids) == len(set(eids))  # each committed row delivered once


async def test_a_retry_with_the_same_event_id_carries_the_same_eid(
    collector: Collector, tmp_path: Path
) -> None:
    """The README's recipe for retrying a timed-out call: pass event_id, so a retry of a
    call that was stored after all is one event to the pipeline (same eid)."""
    emitter = at.Emitter(collector.url, storage=at.SQLiteStorage(tmp_path / "retry.db"))
    async with at.Tracker(emitter) as tracker:
        eid = str(uuid.uuid4())
        for _ in range(2):  # the first attempt "timed out" after storing
            assert await tracker.track_struct_event("c", "once", event_id=eid) == eid
        await tracker.flush(timeout=5)
    assert {event.payload["eid"] for event in collector.events} == {eid}
