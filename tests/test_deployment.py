"""What the README's "Deployment" section says about the SQLite file, checked on a real one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asynctracker as at

PAYLOAD = {"e": "se", "se_ca": "backlog", "se_ac": "x" * 200}


def size_and_log(db_path: Path) -> tuple[int, bool]:
    """The file's size, and whether its write-ahead log is still there."""
    return db_path.stat().st_size, Path(f"{db_path}-wal").exists()


def vacuum(db_path: Path) -> None:
    connection = sqlite3.connect(db_path)
    connection.execute("VACUUM")
    connection.close()


async def test_vacuum_shrinks_a_file_whose_deleted_rows_were_not_given_back(
    db_path: Path,
) -> None:
    async with at.SQLiteStorage(db_path) as storage:
        for _ in range(10):
            await storage.add_event_rows([PAYLOAD] * 1000)
        await storage.delete_all_event_rows()  # what delivering the backlog ends with
        await storage.add_event_rows([PAYLOAD] * 100)
    after_backlog, log_left = size_and_log(db_path)
    assert after_backlog > 10_000 * len(PAYLOAD["se_ac"])  # the space was not given back
    assert not log_left  # the log goes with the last connection

    vacuum(db_path)

    assert size_and_log(db_path)[0] < after_backlog / 10
    async with at.SQLiteStorage(db_path) as storage:
        assert len(await storage.get_all_event_rows()) == 100
