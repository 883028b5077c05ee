"""The collector's SQLite table, owned by one daemon thread (the way aiosqlite owns one).

Every operation (insert a batch, delete all, run a query) is a function queued to the
thread and run in order, so a query always sees every insert queued before it and the
event loop never waits for the disk. The thread is a daemon: a program that starts a
collector and never stops it still exits. Inserts that piled up while the thread was busy
are written in one transaction, so 100k events/s do not turn into 100k commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .._threads import run_and_reply
from .._validate import decode_event
from ._safe import scrub

logger = logging.getLogger("asynctracker")

__all__ = ["Filters", "Row", "Worker", "context_schemas", "micro_schema", "row_values"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS collector_events (
    seq INTEGER PRIMARY KEY,
    valid INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    app_id TEXT NOT NULL,
    schema TEXT NOT NULL,
    contexts TEXT NOT NULL,
    payload TEXT NOT NULL,
    method TEXT NOT NULL,
    errors TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS collector_events_valid ON collector_events (valid, seq);
"""
#: The columns a :class:`Row` is built from, in order.
COLUMNS = "seq, payload, method, errors, received_at"

#: (seq, payload, method, errors, received_at) as handed to :meth:`Worker.insert`.
StoredEvent = tuple[int, dict[str, Any], str, tuple[str, ...], float]
#: (seq, payload JSON, method, errors JSON, received_at) as stored.
Row = tuple[int, str, str, str, float]


@dataclass(frozen=True, slots=True)
class Filters:
    """What a listing asks for; every given field must match (``None``: any)."""

    valid: bool | None = None
    event_type: str | None = None
    app_id: str | None = None
    schema: str | None = None
    #: Every one of these context schemas must be attached.
    contexts: tuple[str, ...] = ()
    #: Case-insensitive substring of the stored payload or errors.
    text: str | None = None
    #: The HTTP method the event came by (POST: tp2, GET: /i); "" matches nothing.
    method: str | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if self.valid is not None:
            clauses.append("valid = ?")
            params.append(int(self.valid))
        for column, value in (
            ("event_type", self.event_type),
            ("app_id", self.app_id),
            ("schema", self.schema),
            ("method", self.method),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for context in self.contexts:
            clauses.append("instr(contexts, ?) > 0")
            params.append(json.dumps(context))
        if self.text:
            clauses.append("(instr(lower(payload), ?) > 0 OR instr(lower(errors), ?) > 0)")
            needle = json.dumps(self.text.lower())[1:-1]  # as it appears in stored JSON
            params += [needle, needle]
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


#: The schema the pipeline gives events that are not self-describing.
_BUILTIN_SCHEMAS = {
    "pv": "iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0",
    "pp": "iglu:com.snowplowanalytics.snowplow/page_ping/jsonschema/1-0-0",
    "se": "iglu:com.google.analytics/event/jsonschema/1-0-0",
    "tr": "iglu:com.snowplowanalytics.snowplow/transaction/jsonschema/1-0-0",
    "ti": "iglu:com.snowplowanalytics.snowplow/transaction_item/jsonschema/1-0-0",
}


def micro_schema(payload: Mapping[str, object], decoded: Mapping[str, object]) -> str:
    """The schema Micro reports: the self-describing event's, or the built-in type's."""
    unstruct = decoded.get("unstruct_event")
    if isinstance(unstruct, dict):
        schema = unstruct.get("schema")
        return schema if isinstance(schema, str) else ""
    return _BUILTIN_SCHEMAS.get(str(payload.get("e", "")), "")


def dumps(value: object) -> str:
    """JSON that is always valid UTF-8: lone surrogates and the like come out escaped."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def context_schemas(decoded: Mapping[str, object]) -> list[str]:
    """The schema of each context entity of a decoded event (entities without one left out)."""
    contexts = decoded.get("contexts")
    if not isinstance(contexts, list):
        return []
    return [
        c["schema"] for c in contexts if isinstance(c, dict) and isinstance(c.get("schema"), str)
    ]


def row_values(
    seq: int,
    payload: dict[str, Any],
    method: str,
    errors: tuple[str, ...],
    received_at: float,
) -> tuple[object, ...]:
    """The stored columns of one event; the derived ones (type, schema...) serve filters."""
    decoded = decode_event(payload)
    return (
        seq,
        int(not errors),
        str(payload.get("e", "")),
        str(payload.get("aid", "")),
        micro_schema(payload, decoded),
        dumps(context_schemas(decoded)),
        dumps(payload),
        method,
        dumps(list(errors)),
        received_at,
    )


class Worker:
    """One SQLite connection and the daemon thread that alone uses it."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[Callable[[sqlite3.Connection], None] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="collector-sqlite", daemon=True)
        self._opened = threading.Event()
        self._failure: BaseException | None = None
        #: The highest ``seq`` committed to disk; read by the loop to know what it may forget.
        self.committed = 0

    async def start(self) -> None:
        """Open the database (raising ``sqlite3.Error``/``OSError`` as they are) and start."""
        self._thread.start()
        await asyncio.get_running_loop().run_in_executor(None, self._opened.wait)
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except BaseException as exc:
            self._failure = exc
            self._opened.set()
            return
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            _migrate(db)
        except BaseException as exc:
            db.close()
            self._failure = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                job(db)
        finally:
            db.close()

    def call(self, function: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run ``function(connection)`` on the thread, after everything queued before it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(lambda db: run_and_reply(future, lambda: function(db)))
        return future

    def insert(
        self, rows: Iterable[StoredEvent], on_commit: Callable[[], None] | None = None
    ) -> None:
        """Queue rows for insertion; ``on_commit`` is then called on the caller's loop.

        Batches queued while the thread was busy share one transaction.
        """
        batch = list(rows)
        loop = asyncio.get_running_loop()

        def job(db: sqlite3.Connection) -> None:
            values = [row_values(*row) for row in batch]
            try:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR REPLACE INTO collector_events VALUES (?,?,?,?,?,?,?,?,?,?)", values
                )
                db.execute("COMMIT")
            except sqlite3.Error:
                logger.exception("collector could not store %d events", len(values))
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                return
            if batch:
                self.committed = max(self.committed, batch[-1][0])
            if on_commit is not None:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(on_commit)

        self._jobs.put(job)

    def clear(self) -> None:
        """Queue the deletion of every event (after any insert queued before)."""

        def job(db: sqlite3.Connection) -> None:
            try:
                db.execute("DELETE FROM collector_events")
            except sqlite3.Error:
                logger.exception("collector could not delete its events")

        self._jobs.put(job)

    async def stop(self) -> None:
        """Finish every queued job, then close the connection and end the thread."""
        self._jobs.put(None)
        if self._thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)


def query(
    filters: Filters, *, limit: int, offset: int = 0, newest_first: bool = True
) -> Callable[[sqlite3.Connection], tuple[int, list[Row]]]:
    """A job returning (how many match, one page of them)."""
    where, params = filters.where()
    order = "DESC" if newest_first else "ASC"

    def job(db: sqlite3.Connection) -> tuple[int, list[Row]]:
        (total,) = db.execute(f"SELECT count(*) FROM collector_events{where}", params).fetchone()
        rows = db.execute(
            f"SELECT {COLUMNS} FROM collector_events{where} ORDER BY seq {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return total, rows

    return job


def summary(db: sqlite3.Connection) -> tuple[int, dict[str, int], dict[str, int]]:
    """(highest seq, count per event type, count per validity 'good'/'bad') of the table."""
    (highest,) = db.execute("SELECT coalesce(max(seq), 0) FROM collector_events").fetchone()
    types = dict(db.execute("SELECT event_type, count(*) FROM collector_events GROUP BY 1"))
    valid = dict(db.execute("SELECT valid, count(*) FROM collector_events GROUP BY 1"))
    return highest, types, {"good": valid.get(1, 0), "bad": valid.get(0, 0)}


def _migrate(db: sqlite3.Connection) -> None:
    """Move events stored by earlier versions (table ``received_events``) into this table.

    Their text is scrubbed on the way, since earlier versions stored lone surrogates that
    broke every page showing them; rows that no longer parse are dropped.
    """
    if (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'received_events'"
        ).fetchone()
        is None
    ):
        return
    values = []
    for seq, payload, method, errors, received_at in db.execute(
        "SELECT id, payload, method, errors, received_at FROM received_events ORDER BY id"
    ):
        try:
            event, _ = scrub(json.loads(payload))
            problems, _ = scrub(json.loads(errors))
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict) and isinstance(problems, list):
            values.append(row_values(seq, event, method, tuple(map(str, problems)), received_at))
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO collector_events VALUES (?,?,?,?,?,?,?,?,?,?)", values)
    db.execute("DROP TABLE received_events")
    db.execute("COMMIT")
