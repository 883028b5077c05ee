"""Claims under a stepping wall clock (NTP, a VM resumed): issue 19, row 8.

Claims of this boot expire by the host's monotonic clock, and local schedules run on
it, so a wall-clock step neither hands rows still in flight to another process (sent
twice) nor keeps a dead process's rows from being taken back. Real SQLite files; the
dead worker is a real process, killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import asynctracker as at
from asynctracker.storage import _sqlite_claims

HOUR = 3600.0


@pytest.fixture
def step_wall_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Step this process's wall clock (``time.time``) by some seconds, as NTP or a VM
    resume steps every process's; the monotonic clock does not move."""
    real = time.time

    def step(seconds: float) -> None:
        monkeypatch.setattr(time, "time", lambda: real() + seconds)

    return step


def owners(path: Path) -> list[str | None]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT owner FROM events ORDER BY id")]


async def test_a_wall_clock_step_ahead_takes_no_row_still_in_flight(
    db_path: Path, step_wall_clock: Callable[[float], None]
) -> None:
    async with at.SQLiteStorage(db_path) as sending, at.SQLiteStorage(db_path) as other:
        await sending.add_event_rows([{"e": "pv", "n": str(n)} for n in range(200)])
        in_flight = await sending.claim_event_rows(500)  # its request is on the wire
        assert len(in_flight) == 200
        step_wall_clock(+HOUR)
        # Another emitter on the file looks for abandoned rows: nothing has expired.
        assert await other.reclaim_abandoned_rows() == 0
        assert await other.claim_event_rows(500) == []
        assert await sending.delete_claimed_rows([row.id for row in in_flight]) == 200
    assert owners(db_path) == []


async def test_a_wall_clock_step_back_still_expires_claims_on_time(
    db_path: Path, step_wall_clock: Callable[[float], None]
) -> None:
    async with (
        at.SQLiteStorage(db_path, claim_ttl=0.2) as stuck,
        at.SQLiteStorage(db_path) as other,
    ):
        await stuck.add_event_rows([{"e": "pv"}])
        [claimed] = await stuck.claim_event_rows(10)
        step_wall_clock(-HOUR)
        await asyncio.sleep(0.3)  # its claim_ttl has passed, by the monotonic clock
        assert await other.reclaim_abandoned_rows() == 1
        assert [row.id for row in await other.claim_event_rows(10)] == [claimed.id]


HOLD_ROWS = """
import asyncio, sys
import asynctracker as at

async def main():
    storage = at.SQLiteStorage(sys.argv[1])
    await storage.open()
    rows = await storage.claim_event_rows(100)
    print(len(rows), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_dead_workers_rows_come_back_after_a_step_back_in_time(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, step_wall_clock: Callable[[float], None]
) -> None:
    """The next look for abandoned rows is scheduled on the monotonic clock: a wall
    clock stepped back an hour does not put it off for an hour."""
    monkeypatch.setattr(_sqlite_claims, "_RECLAIM_INTERVAL", 0.2)
    async with at.SQLiteStorage(db_path) as survivor:
        await survivor.add_event_rows([{"e": "pv", "n": str(n)} for n in range(50)])
        assert await survivor.claim_event_rows(0) == []  # schedules the next reclaim
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD_ROWS, str(db_path), stdout=asyncio.subprocess.PIPE
        )
        assert worker.stdout is not None
        assert (await asyncio.wait_for(worker.stdout.readline(), 30)).strip() == b"50"
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        step_wall_clock(-HOUR)
        await asyncio.sleep(0.3)
        assert len(await survivor.claim_event_rows(100)) == 50
