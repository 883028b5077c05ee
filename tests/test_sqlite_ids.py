"""SQLite row ids are plain rowids: once the newest rows are deleted, their ids may be
given to new rows. Nothing may then confuse a new event with the old one.

Real SQLite files; the delivery case uses a real collector on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply


def payload(action: str) -> dict[str, str]:
    return {"e": "se", "se_ca": "c", "se_ac": action}


def table_sql(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
    return str(row[0])


async def test_a_late_delete_leaves_a_new_row_with_the_same_id_alone(tmp_path: Path) -> None:
    """This process's claim lapsed; another process sent the row and deleted it; a new
    row got its id. This process's delete (its send finished at last) must not touch
    the new row."""
    path = tmp_path / "late.db"
    async with (
        at.SQLiteStorage(path, claim_ttl=0.1) as mine,
        at.SQLiteStorage(path) as other,
    ):
        await mine.add_event_row(payload("old"))
        [claimed] = await mine.claim_event_rows(10)
        await asyncio.sleep(0.2)
        assert await other.reclaim_abandoned_rows() == 1
        [taken] = await other.claim_event_rows(10)
        assert await other.delete_claimed_rows([taken.id]) == 1
        await other.add_event_row(payload("new"))
        [new] = await other.get_all_event_rows()
        assert new.id == claimed.id  # the id was given again

        assert await mine.delete_claimed_rows([claimed.id]) == 0
        assert [row.event["se_ac"] for row in await mine.get_all_event_rows()] == ["new"]


class FailFirstSendOfEach:
    """Answers 500 to the first request carrying an action, 200 (the default) after."""

    def __init__(self) -> None:
        self.failed: set[bytes] = set()

    def __call__(self, request: ReceivedRequest) -> Reply | None:
        for action in (b"old", b"new"):
            if b'"se_ac":"' + action + b'"' in request.body and action not in self.failed:
                self.failed.add(action)
                return Reply(500)
        return None


async def test_a_new_event_given_a_deleted_rows_id_is_not_dropped_for_its_failures(
    collector: Collector, tmp_path: Path
) -> None:
    """With max_attempts=2, the old event failed once and was then delivered by another
    process; the new event with its id fails once too. That is its first failure,
    not its second: it is kept and delivered."""
    collector.responder = FailFirstSendOfEach()
    path = tmp_path / "reuse.db"
    retry = at.RetryPolicy(max_attempts=2, backoff_base=30.0, backoff_cap=30.0)
    emitter = at.Emitter(collector.url, storage=at.SQLiteStorage(path), retry=retry)
    async with at.Tracker(emitter, app_id="ids") as tracker:
        await tracker.track_struct_event("c", "old")
        assert await tracker.flush(timeout=5) == 1  # failed once, kept for a retry
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            [(old_id,)] = conn.execute("SELECT id FROM events").fetchall()
            conn.execute("DELETE FROM events")  # delivered by another process
        await tracker.track_struct_event("c", "new")
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("SELECT id FROM events").fetchall() == [(old_id,)]
        assert await tracker.flush(timeout=5) == 1  # the new event's first failure
        assert await tracker.flush(timeout=5) == 0
        assert emitter.stats().dropped == 0
    assert [event.payload["se_ac"] for event in collector.events] == ["new"]


def make_old_file(path: Path, events: int) -> None:
    """The table as earlier versions made it: AUTOINCREMENT, no dest column; the
    first row deleted (so the ids do not start at 1) and the last one claimed."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL,"
            " owner TEXT, claimed_until REAL);"
        )
        for n in range(events + 1):
            conn.execute("INSERT INTO events(event) VALUES (?)", (f'{{"e":"pv","n":"{n}"}}',))
        conn.execute("DELETE FROM events WHERE id = 1")
        conn.execute(
            "UPDATE events SET owner = 'elsewhere', claimed_until = 4e9 WHERE id = ?",
            (events + 1,),
        )


async def test_a_small_file_of_an_earlier_version_is_rebuilt_with_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    make_old_file(path, 3)
    async with at.SQLiteStorage(path) as storage:
        rows = await storage.get_all_event_rows()
        assert [(row.id, row.event["n"]) for row in rows] == [(2, "1"), (3, "2"), (4, "3")]
        assert [row.id for row in await storage.claim_event_rows(10)] == [2, 3]  # 4 is held
    assert "AUTOINCREMENT" not in table_sql(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT owner FROM events WHERE id = 4").fetchall() == [("elsewhere",)]


async def test_a_large_file_of_an_earlier_version_is_converted_once_with_its_rows(
    tmp_path: Path,
) -> None:
    """However large, an earlier version's table is rebuilt at the first opening, in one
    transaction: its rows, ids and claims kept, the row count right from then on."""
    path = tmp_path / "large.db"
    make_old_file(path, 3000)
    async with at.SQLiteStorage(path) as storage:
        assert await storage.count() == 3000
        await storage.add_event_row(payload("more"))
        assert await storage.delete_event_rows([2, 3]) == 2
        rows = await storage.get_all_event_rows()
        assert (rows[0].id, rows[-1].id, len(rows)) == (4, 3002, 2999)
    assert "AUTOINCREMENT" not in table_sql(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)


async def test_a_file_of_a_newer_layout_is_refused_with_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    async with at.SQLiteStorage(path) as storage:
        await storage.add_event_row(payload("kept"))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    storage = at.SQLiteStorage(path)
    with pytest.raises(
        at.StorageError,
        match=r"newer asynctracker \(layout 99; this version reads layouts up to 1\)",
    ):
        await storage.add_event_row(payload("refused"))
    await storage.aclose()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # nothing written, nothing lost
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
