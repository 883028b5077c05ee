"""One SQLite file, several collectors: an event is only ever sent to the collector it
was tracked for (issue 15, point 6), against real collectors and real files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asynctracker as at
from asynctracker.collector import Collector, Reply

NO_AUTO_RETRY = at.RetryPolicy(auto_retry=False)


def actions(collector: Collector) -> list[str]:
    return sorted(event.payload["se_ac"] for event in collector.good)


async def track(collector: Collector, db: Path, *names: str, flush: bool = True) -> int:
    emitter = at.Emitter(collector.url, db_name=db, retry=NO_AUTO_RETRY, close_timeout=0)
    async with at.Tracker(emitter) as tracker:
        for name in names:
            await tracker.track_struct_event("test", name)
        return await tracker.flush(timeout=10) if flush else emitter.stats().queued


async def test_events_left_by_a_staging_run_never_reach_production(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Collector() as staging, Collector() as production:
        staging.responder = lambda request: Reply(503)  # staging is down: events wait
        assert await track(staging, db_path, "s1", "s2", "s3") == 3

        with caplog.at_level(logging.WARNING, logger="asynctracker"):
            assert await track(production, db_path, "p1", "p2") == 0
        assert actions(production) == ["p1", "p2"]
        [warning] = [r.getMessage() for r in caplog.records if "another destination" in r.message]
        assert "holds 3 event(s) for another destination, #1 " + staging.url in warning
        assert "adopt_events(1)" in warning
        assert f"asynctracker queue {db_path}" in warning

        staging.responder = None  # staging is back: its next run sends what waited
        assert await track(staging, db_path, "s4") == 0
        assert actions(staging) == ["s1", "s2", "s3", "s4"]
        assert actions(production) == ["p1", "p2"]


async def test_two_programs_sharing_a_file_at_once_each_reach_only_their_collector(
    db_path: Path,
) -> None:
    async with Collector() as first, Collector() as second:
        one = at.Emitter(first.url, db_name=db_path, retry=NO_AUTO_RETRY)
        two = at.Emitter(second.url, db_name=db_path, retry=NO_AUTO_RETRY)
        async with at.Tracker(one) as a, at.Tracker(two) as b:
            for n in range(50):
                await a.track_struct_event("test", f"a{n}")
                await b.track_struct_event("test", f"b{n}")
            assert await a.flush(timeout=10) == 0
            assert await b.flush(timeout=10) == 0
        assert actions(first) == sorted(f"a{n}" for n in range(50))
        assert actions(second) == sorted(f"b{n}" for n in range(50))


async def test_the_queue_bound_counts_the_whole_file_and_never_drops_anothers_events(
    db_path: Path,
) -> None:
    """max_events bounds the file (its disk): every destination's events count. At the
    bound, drop_oldest drops the emitter's own oldest events, never another
    destination's; with none of its own to drop, the new event is dropped instead."""
    async with Collector() as other, Collector() as mine:
        other.responder = lambda request: Reply(503)
        assert await track(other, db_path, *(f"o{n}" for n in range(20))) == 20
        mine.responder = lambda request: Reply(503)
        emitter = at.Emitter(mine.url, db_name=db_path, max_events=21, retry=NO_AUTO_RETRY)
        async with at.Tracker(emitter) as tracker:
            assert emitter.stats().queued == 0  # its own: none yet
            await tracker.track_struct_event("test", "mine-1")  # the 21st: room
            await tracker.track_struct_event("test", "mine-2")  # drops mine-1, its own
            assert emitter.stats().dropped == 1
            assert await tracker.flush(timeout=10) == 1
        crowded = at.Emitter(mine.url, db_name=db_path, max_events=20, retry=NO_AUTO_RETRY)
        async with at.Tracker(crowded) as tracker:
            await tracker.track_struct_event("test", "mine-3")  # full of others: dropped
            assert crowded.stats().dropped == 1
        mine.responder = None
        assert await track(mine, db_path, flush=True) == 0
        assert actions(mine) == ["mine-2"]
        other.responder = None
        assert await track(other, db_path) == 0
        assert actions(other) == sorted(f"o{n}" for n in range(20))


async def test_rows_stored_before_collectors_were_recorded_go_with_the_first_emitter(
    db_path: Path,
) -> None:
    """A file from an earlier version has no dest column: it is added, and its rows are
    sent by the first emitter opened on it, as that version did."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL,"
            " owner TEXT, claimed_until REAL);"
        )
        event = '{"e":"se","se_ca":"old","se_ac":"legacy","p":"srv","tv":"x",'
        event += '"eid":"00000000-0000-4000-8000-000000000001","dtm":"1700000000000"}'
        conn.execute("INSERT INTO events(event) VALUES (?)", (event,))
    async with Collector() as collector:
        assert await track(collector, db_path, "new") == 0
        assert actions(collector) == ["legacy", "new"]


# -- issue 19, row 3: who receives and who is billed decides the destination --------------


def with_userinfo(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


def request_credentials(collector: Collector) -> dict[str, set[str]]:
    """The Authorization (and X-Api-Key) each tracked action arrived with."""
    seen: dict[str, set[str]] = {}
    for request in collector.requests:
        auth = request.headers.get("authorization", "") + request.headers.get("x-api-key", "")
        for event in json.loads(request.body or b"{}").get("data", []):
            seen.setdefault(event["se_ac"], set()).add(auth)
    return seen


async def track_as(url: str, db: Path, *names: str, **options: Any) -> int:
    emitter = at.Emitter(url, db_name=db, retry=NO_AUTO_RETRY, close_timeout=0, **options)
    async with at.Tracker(emitter) as tracker:
        for name in names:
            await tracker.track_struct_event("test", name)
        return await tracker.flush(timeout=10)


@pytest.mark.parametrize("kind", ["credentials", "headers"])
async def test_one_tenants_events_never_go_out_with_anothers_credentials(
    db_path: Path, kind: str
) -> None:
    async with Collector() as collector:
        if kind == "credentials":
            tenant_a = {"url": with_userinfo(collector.url, "tenantA:keyA")}
            tenant_b = {"url": with_userinfo(collector.url, "tenantB:keyB")}
        else:
            tenant_a = {"url": collector.url, "headers": {"X-Api-Key": "staging"}}
            tenant_b = {"url": collector.url, "headers": {"X-Api-Key": "production"}}
        collector.responder = lambda request: Reply(503)  # A's events wait in the file
        emitter_a = at.Emitter(
            tenant_a.pop("url"), db_name=db_path, retry=NO_AUTO_RETRY, close_timeout=0, **tenant_a
        )
        async with at.Tracker(emitter_a) as tracker:
            for n in range(20):
                await tracker.track_struct_event("test", f"a{n}")
            assert await tracker.flush(timeout=10) == 20
        collector.responder = None
        emitter_b = at.Emitter(
            tenant_b.pop("url"), db_name=db_path, retry=NO_AUTO_RETRY, close_timeout=0, **tenant_b
        )
        async with at.Tracker(emitter_b) as tracker:
            await tracker.track_struct_event("test", "b0")
            assert await tracker.flush(timeout=10) == 0
        assert actions(collector) == ["b0"]  # A's 20 still wait for A
        secret = b"keyA" if kind == "credentials" else b"staging"
        stored = await asyncio.to_thread(db_path.read_bytes)
        assert secret not in stored  # only a keyed hash names A
    assert all(len(auths) == 1 for auths in request_credentials(collector).values())


async def test_one_endpoint_written_two_ways_is_one_destination(db_path: Path) -> None:
    """``http://h/snowplow`` with the standard path, and ``HTTP://H/`` with
    ``post_path="/snowplow/..."``: the same POST endpoint, so one destination."""
    async with Collector() as collector:
        collector.responder = lambda request: Reply(503)
        assert await track_as(collector.url + "/snowplow", db_path, "first") == 1
        bodies: list[bytes] = []
        collector.responder = lambda request: bodies.append(request.body) or Reply(200)
        rewritten = at.Emitter(
            collector.url.upper().replace("HTTP://", "http://") + "/",
            db_name=db_path,
            post_path="/snowplow/com.snowplowanalytics.snowplow/tp2",
            retry=NO_AUTO_RETRY,
        )
        async with at.Tracker(rewritten) as tracker:
            assert await tracker.flush(timeout=10) == 0
        assert [r.path for r in collector.requests][-1] == (
            "/snowplow/com.snowplowanalytics.snowplow/tp2"
        )
    assert [event["se_ac"] for body in bodies for event in json.loads(body)["data"]] == ["first"]


async def test_stranded_events_are_listed_moved_and_delivered_by_api_and_command(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Collector() as old, Collector() as new:
        old.responder = lambda request: Reply(503)
        assert await track_as(with_userinfo(old.url, "u:p"), db_path, "s1", "s2", "s3") == 3
        # The collector moved: an emitter for the new URL sees them waiting, and says how.
        with caplog.at_level(logging.WARNING, logger="asynctracker"):
            emitter = at.Emitter(new.url, db_name=db_path, retry=NO_AUTO_RETRY)
            async with at.Tracker(emitter) as tracker:
                assert await tracker.flush(timeout=10) == 0
                assert new.events == []
                [waiting] = await emitter.storage.destinations()  # type: ignore[attr-defined]
                assert (waiting.collector, waiting.events) == (old.url.replace("//", "//***@"), 3)
                assert await emitter.adopt_events(waiting.number) == 3
                assert await tracker.flush(timeout=10) == 0
        assert sorted(event.payload["se_ac"] for event in new.events) == ["s1", "s2", "s3"]
        [warning] = [r.getMessage() for r in caplog.records if "another destination" in r.message]
        assert "u:p" not in warning
        assert f"adopt_events({waiting.number})" in warning

        # The same by command line: list, export, move.
        assert await track_as(old.url, db_path, "c1", "c2") == 2
        listing = await asynctracker_cli("queue", str(db_path))
        assert listing.returncode == 0, listing.stderr
        number = next(
            line.split()[0].lstrip("#") for line in listing.stdout.splitlines() if old.url in line
        )
        assert f"{old.url}  2 events" in listing.stdout
        exported = await asynctracker_cli("queue", str(db_path), "--export", number)
        assert [json.loads(line)["se_ac"] for line in exported.stdout.splitlines()] == ["c1", "c2"]
        moved = await asynctracker_cli("queue", str(db_path), "--move", number, "--to", new.url)
        assert moved.returncode == 0, moved.stderr
        assert "moved 2 events" in moved.stdout
        assert "delivered 2 events" in moved.stdout
    assert sorted(event.payload["se_ac"] for event in new.events) == ["c1", "c2", "s1", "s2", "s3"]


async def asynctracker_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "asynctracker", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
