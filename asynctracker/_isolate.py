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
starts over, which costs a few more requests, never an event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._wire import chunk_rows
from .storage.base import EventRow

__all__ = ["Isolation"]


class Isolation:
    """Per-row chunk-size limits and lone-failure counts."""

    __slots__ = ("limits", "strikes", "suspects")

    def __init__(self) -> None:
        self.suspects: set[int] = set()  # failed in a way that may be about content
        self.limits: dict[int, int] = {}  # row id -> most rows its request may carry
        self.strikes: dict[int, int] = {}  # row id -> failures alone while others succeeded

    def chunks(self, rows: Sequence[EventRow], byte_limit: int) -> list[list[EventRow]]:
        """POST chunks for ``rows``, by bytes as usual, but with suspects apart from
        fresh rows and limited rows in chunks of at most their limit."""
        if not self.suspects and not self.limits:
            return chunk_rows(rows, byte_limit)
        fresh = [row for row in rows if row.id not in self.suspects]
        suspects = [row for row in rows if row.id in self.suspects and row.id not in self.limits]
        chunks = chunk_rows(fresh, byte_limit) + chunk_rows(suspects, byte_limit)
        group: list[EventRow] = []
        group_limit = 0
        for row in rows:
            limit = self.limits.get(row.id)
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

    def failed(self, ids: Sequence[int], *, mixed: bool, poison_after: int | None) -> bool:
        """Rows of one request failed in a way that may be about their content.

        They become suspects, sent apart from newer rows. Several rows get requests half
        as large next time when other requests of the same send succeeded (``mixed``),
        or once without that evidence; a single row counts a strike only when ``mixed``.
        True means it is poison.
        """
        self.suspects.update(ids)
        if len(ids) > 1:
            if not mixed and any(row_id in self.limits for row_id in ids):
                return False  # split once already without evidence: an outage, stop here
            limit = (len(ids) + 1) // 2
            for row_id in ids:
                self.limits[row_id] = limit
            return False
        if not mixed:
            return False
        if poison_after is None:
            return False
        row_id = ids[0]
        self.limits[row_id] = 1
        self.strikes[row_id] = self.strikes.get(row_id, 0) + 1
        return self.strikes[row_id] >= poison_after

    def forget(self, ids: Iterable[int]) -> None:
        """The rows were deleted (delivered or dropped)."""
        if not self.suspects:
            return
        for row_id in ids:
            self.suspects.discard(row_id)
            self.limits.pop(row_id, None)
            self.strikes.pop(row_id, None)
