"""The SQLite file's layout, its version (``PRAGMA user_version``: a newer one is
refused, an older one brought up to date once, in one transaction), and why.

* ``events``: plain rowids (a new row takes the largest id + 1, so ids come back once
  the newest rows are deleted: nothing remembers a row by its id alone); the claim
  (``owner`` .. ``claim_mono``); ``dest``, its destination.
* ``destinations``: ``url`` is ``key:`` and a keyed hash of the identity (earlier
  versions: the URL without credentials); ``shown``, for messages.
* ``queue_state``: ``holes`` makes the row count a constant-time read in any
  transaction, ``max(id) - min(id) + 1 - holes``: an insert leaves it alone, and every
  delete of this version sets it in its transaction (:func:`delete`). A delete by other
  code (an earlier version, a sqlite3 shell) leaves it short only when it makes a hole
  (not the oldest or newest rows): the count then reads high, never low, until the
  queue is next empty. ``salt`` keys the hashes.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Sequence

from ..exceptions import StorageError

__all__ = ["COUNT", "EVICTABLE", "VERSION", "delete", "insert_rows", "migrate"]

#: The layout this version writes. 0: a file of an earlier version (or a new file).
VERSION = 1

#: The number of rows, read in constant time (see the module).
COUNT = (
    "SELECT ifnull((SELECT max(id) FROM main.events) - (SELECT min(id) FROM main.events) + 1, 0)"
    " - (SELECT holes FROM main.queue_state)"
)
#: A destination's rows ``drop_oldest`` may drop, oldest first (none being sent).
EVICTABLE = "SELECT id FROM events WHERE owner IS NULL AND (dest IS NULL OR dest = ?) ORDER BY id"

_EVENTS = (
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, event TEXT NOT NULL, "
    "owner TEXT, claimed_until REAL, dest INTEGER, claim_boot TEXT, claim_mono REAL)"
)
_OWNER_INDEX = "CREATE INDEX IF NOT EXISTS events_owner ON events(owner) WHERE owner IS NOT NULL"
_DESTINATIONS = "CREATE TABLE IF NOT EXISTS destinations (id INTEGER PRIMARY KEY, url TEXT"
_DESTINATIONS += " NOT NULL UNIQUE, shown TEXT)"
_QUEUE_STATE = "CREATE TABLE IF NOT EXISTS queue_state (id INTEGER PRIMARY KEY CHECK"
_QUEUE_STATE += " (id = 0), holes INTEGER NOT NULL, salt BLOB NOT NULL)"
# The rows left after a delete are the rows counted before less those it deleted; holes
# follow from that and the new min and max ids, 0 once none is left.
_HOLES_AFTER = "UPDATE queue_state SET holes = ifnull((SELECT max(id) FROM events)"
_HOLES_AFTER += " - (SELECT min(id) FROM events) + 1 - ?, 0)"
_COLUMNS = "id, event, owner, claimed_until, dest"


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to :data:`VERSION` inside one ``BEGIN IMMEDIATE`` transaction
    (the caller's), or refuse a newer one with StorageError. Idempotent."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise StorageError(
            f"the file was written by a newer asynctracker (layout {version}; this version "
            f"reads layouts up to {VERSION}): upgrade asynctracker, or use another file"
        )
    if version == VERSION:
        return
    conn.execute(_EVENTS)
    columns = _columns(conn, "events")
    for column, kind in (("dest", "INTEGER"), ("claim_boot", "TEXT"), ("claim_mono", "REAL")):
        if column not in columns:
            conn.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
    (autoincrement,) = conn.execute(
        "SELECT sql LIKE '%AUTOINCREMENT%' FROM sqlite_master "
        "WHERE type = 'table' AND name = 'events'"
    ).fetchone()
    if autoincrement:  # an earlier version's table: rebuilt as plain rowids, rows kept
        conn.execute("DROP TABLE IF EXISTS events_rebuilt")
        conn.execute(_EVENTS.replace("IF NOT EXISTS events", "events_rebuilt"))
        conn.execute(f"INSERT INTO events_rebuilt({_COLUMNS}) SELECT {_COLUMNS} FROM events")
        conn.execute("DROP TABLE events")
        conn.execute("ALTER TABLE events_rebuilt RENAME TO events")
    conn.execute(_OWNER_INDEX)
    conn.execute(_DESTINATIONS)
    if "shown" not in _columns(conn, "destinations"):
        conn.execute("ALTER TABLE destinations ADD COLUMN shown TEXT")
    conn.execute(_QUEUE_STATE)
    conn.execute(
        "INSERT OR IGNORE INTO queue_state(id, holes, salt) VALUES (0, 0, ?)", (os.urandom(16),)
    )
    conn.execute(
        "UPDATE queue_state SET holes = ifnull((SELECT max(id) - min(id) + 1 FROM events), 0)"
        " - (SELECT count(*) FROM events)"
    )
    conn.execute("DROP TRIGGER IF EXISTS events_holes")  # a development build's
    conn.execute(f"PRAGMA user_version = {VERSION}")


def delete(conn: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[object]]]) -> int:
    """Run DELETE ``statements`` in the caller's transaction and set ``holes`` for the
    rows left (one statement for all the rows, where a trigger ran once per row);
    return how many rows they deleted."""
    (before,) = conn.execute(COUNT).fetchone()
    deleted = sum(max(conn.execute(sql, params).rowcount, 0) for sql, params in statements)
    if deleted:
        conn.execute(_HOLES_AFTER, (before - deleted,))
    return deleted


@functools.lru_cache(maxsize=128)
def _insert_sql(rows: int, limit: int | None) -> str:
    """One statement storing ``rows`` (event, dest) rows, all or none: none when they
    would take the count past ``limit``."""
    sql = "INSERT INTO events(event, dest) SELECT column1, column2 FROM (VALUES "
    sql += ",".join(["(?, ?)"] * rows) + ")"
    return sql if limit is None else f"{sql} WHERE ({COUNT}) + {rows} <= {limit}"


def insert_rows(conn: sqlite3.Connection, values: Sequence[object], limit: int | None) -> bool:
    """``values`` (event, dest pairs) in ONE statement, which holds the write lock for one
    step, never across a hand-over of the GIL; False when they do not all fit under
    ``limit`` rows in the file (nothing stored). Every insert goes through it."""
    rows = len(values) // 2
    return bool(conn.execute(_insert_sql(rows, limit), values).rowcount == rows)
