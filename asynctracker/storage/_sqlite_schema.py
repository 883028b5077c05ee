"""The SQLite file's layout, its version, and bringing older files up to it.

``PRAGMA user_version`` says which layout a file has. A file of a newer layout than
this version knows is refused (an older asynctracker must not write rows a newer one
reads differently); an older file is brought up to date once, in one transaction, by
whichever process opens it first.

The layout, and why:

* ``events``: one row per event. ``id`` is a plain rowid, never AUTOINCREMENT (that
  keeps a counter row written by every insert, a second page per commit): a new row's
  id is the largest id + 1, so once the newest rows are deleted their ids come back,
  and nothing remembers a row by its id alone. ``owner``/``claimed_until`` mark rows
  being sent (``_sqlite_claims``); ``claim_boot``/``claim_mono`` carry the claim's
  expiry on the host's monotonic clock, which wall-clock steps do not move. ``dest``:
  the destination the row was tracked for (``destinations.id``).
* ``destinations``: ``url`` is the destination's identity, ``key:`` and a keyed hash
  of everything that decides who receives and is billed (never a secret in clear);
  rows written by earlier versions hold the URL without credentials. ``shown`` is the
  URL without secrets, for messages.
* ``queue_state``: one row. ``holes`` makes the row count a constant-time read inside
  any transaction: ids are dense but for the rows deleted between the oldest and the
  newest, so ``count = max(id) - min(id) + 1 - holes``. An insert takes ``max + 1`` and
  leaves ``holes`` alone; the trigger keeps it right on every delete, whoever deletes
  (an older asynctracker, a user's sqlite3 shell). The queue bound reads the count in
  the transaction that inserts. ``salt`` keys the destination hashes.
"""

from __future__ import annotations

import os
import sqlite3

from ..exceptions import StorageError

__all__ = ["COUNT", "VERSION", "migrate"]

#: The layout this version writes. 0: a file of an earlier version (or a new file).
VERSION = 1

#: The number of rows, read in constant time (see the module).
COUNT = (
    "SELECT ifnull((SELECT max(id) FROM main.events) - (SELECT min(id) FROM main.events) + 1, 0)"
    " - (SELECT holes FROM main.queue_state)"
)

_EVENTS = """CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL,
    owner TEXT,
    claimed_until REAL,
    dest INTEGER,
    claim_boot TEXT,
    claim_mono REAL
)"""
_OWNER_INDEX = "CREATE INDEX IF NOT EXISTS events_owner ON events(owner) WHERE owner IS NOT NULL"
_DESTINATIONS = """CREATE TABLE IF NOT EXISTS destinations (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    shown TEXT
)"""
_QUEUE_STATE = """CREATE TABLE IF NOT EXISTS queue_state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    holes INTEGER NOT NULL,
    salt BLOB NOT NULL
)"""
# After deleting row o, with a = max(id) and b = min(id) of the rows left:
# holes' = (a - b + 1) - ((max(a, o) - min(b, o) + 1) - holes - 1); 0 once empty.
_HOLES_TRIGGER = """CREATE TRIGGER IF NOT EXISTS events_holes AFTER DELETE ON events BEGIN
    UPDATE queue_state SET holes = CASE WHEN (SELECT max(id) FROM events) IS NULL THEN 0 ELSE
        ((SELECT max(id) FROM events) - (SELECT min(id) FROM events) + 1)
        - ((max((SELECT max(id) FROM events), OLD.id)
            - min((SELECT min(id) FROM events), OLD.id) + 1) - holes - 1)
    END;
END"""
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
    conn.execute(_HOLES_TRIGGER)
    conn.execute(f"PRAGMA user_version = {VERSION}")
