"""The collector's SQLite table: its columns, the values stored for an event, and the
filters of the listings as SQL.

Pure functions and values, no I/O: :mod:`._db` runs them on the database. Besides the
event itself (its payload and errors as JSON), each row keeps the columns a filter asks
about (validity, event type, app id, schema, context schemas), so that every listing is
one indexed query rather than a scan of decoded payloads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._validate import decode_event

__all__ = [
    "COLUMNS",
    "INSERT",
    "SCHEMA",
    "Filters",
    "Row",
    "StoredEvent",
    "context_schemas",
    "micro_schema",
    "row_values",
]

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

#: One statement inserts a row of :func:`row_values` (a re-sent ``seq`` replaces its row).
INSERT = "INSERT OR REPLACE INTO collector_events VALUES (?,?,?,?,?,?,?,?,?,?)"

#: (seq, payload, method, errors, received_at): an event as the log hands it over.
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
