"""Isolating a poison event: one event can never hold the others of its chunk hostage.

A collector may fail on one event's content (a parser that gives up on deep nesting
and drops the connection, a 500 from a bug), and a POST chunk carrying that event
then fails as a whole, every time, with every event tracked since joining it. So a
failing chunk's rows become suspects, sent apart from newer events (at most one more
request per send); each time a suspect chunk fails while other requests of the same
send succeed (the collector is up), it is sent next time in chunks half as large,
until the failing event travels alone. A chunk that fails with no such evidence (it
was the send's only request, as when the send task batches a burst) is split in halves
once, which gives the evidence: one half goes through, or both fail like an outage.
Once an event has failed alone ``RetryPolicy.poison_after`` times while other requests
succeeded, it is dropped as poison and reported. An outage (every request failing)
costs at most that one split and counts against no event; failures that say nothing
about the content (the collector unreachable, 408/429/502/503/504) make no suspects.

The memory is per process and per emitter, like ``max_attempts``' counts: a restart
starts over, which costs a few more requests, never an event. Both are keyed by
:func:`row_key`, not by the row id alone: a storage may give a deleted row's id to a
new row (SQLite does once the newest rows are gone), and a new event must not inherit
an old one's failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._wire import chunk_rows
from .storage.base import EventRow

__all__ = ["Isolation", "row_key"]


def row_key(row: EventRow) -> int:
    """This stored event's identity for per-row memory: its id and its payload, so an
    id reused for another event (after the first was deleted elsewhere) is a new key."""
    return hash((row.id, row.raw))


class Isolation:
    """Per-row chunk-size limits and lone-failure counts."""

    __slots__ = ("limits", "strikes", "suspects")

    def __init__(self) -> None:
        # Keyed by row_key.
        self.suspects: set[int] = set()  # failed in a way that may be about content
        self.limits: dict[int, int] = {}  # most rows its request may carry
        self.strikes: dict[int, int] = {}  # failures alone while others succeeded

    def chunks(self, rows: Sequence[EventRow], byte_limit: int) -> list[list[EventRow]]:
        """POST chunks for ``rows``, by bytes as usual, but with suspects apart from
        fresh rows and limited rows in chunks of at most their limit."""
        if not self.suspects and not self.limits:
            return chunk_rows(rows, byte_limit)
        keyed = [(row, row_key(row)) for row in rows]
        fresh = [row for row, key in keyed if key not in self.suspects]
        suspects = [row for row, key in keyed if key in self.suspects and key not in self.limits]
        chunks = chunk_rows(fresh, byte_limit) + chunk_rows(suspects, byte_limit)
        group: list[EventRow] = []
        group_limit = 0
        for row, key in keyed:
            limit = self.limits.get(key)
            if limit is None:
                continue
            if group and (limit != group_limit or len(group) >= group_limit):
                chunks += chunk_rows(group, byte_limit)
                group = []
            group.append(row)
            group_limit = limit
        if group:
            chunks += chunk_rows(group, byte_limit)
        return chunks

    def failed(self, keys: Sequence[int], *, mixed: bool, poison_after: int | None) -> bool:
        """Rows of one request (their row_keys) failed in a way that may be about their
        content.

        They become suspects, sent apart from newer rows. Several rows get requests half
        as large next time when other requests of the same send succeeded (``mixed``),
        or once without that evidence; a single row counts a strike only when ``mixed``.
        True means it is poison.
        """
        self.suspects.update(keys)
        if len(keys) > 1:
            if not mixed and any(key in self.limits for key in keys):
                return False  # split once already without evidence: an outage, stop here
            limit = (len(keys) + 1) // 2
            for key in keys:
                self.limits[key] = limit
            return False
        if not mixed:
            return False
        if poison_after is None:
            return False
        key = keys[0]
        self.limits[key] = 1
        self.strikes[key] = self.strikes.get(key, 0) + 1
        return self.strikes[key] >= poison_after

    def forget(self, keys: Iterable[int]) -> None:
        """The rows (their row_keys) were deleted (delivered or dropped)."""
        if not self.suspects:
            return
        for key in keys:
            self.suspects.discard(key)
            self.limits.pop(key, None)
            self.strikes.pop(key, None)
