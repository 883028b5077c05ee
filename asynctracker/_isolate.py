"""What the send loop remembers about rows that failed: attempts, suspects, poison.

**Isolation.** A collector may fail on one event's content (a parser that gives up on
deep nesting and drops the connection, a 500 from a bug), and a POST chunk carrying
that event then fails as a whole, every time, with every event tracked since joining
it. So a failing chunk's rows become suspects, sent apart from newer events; each time
a suspect chunk fails while other requests of the same send succeed, it is sent next
time in chunks half as large, until the failing event travels alone. A chunk that fails
with no such evidence (the send's only request) is split in halves once, which gives
the evidence. Failures that say nothing about the content (the collector unreachable,
408/429/502/503/504) make no suspects.

**Poison: dropping needs evidence that random failures cannot produce.** An event that
fails alone is not dropped for failing often: a balancer failing 70% of requests at
random fails a healthy event alone ten times in a row now and then. Instead, each lone
failure adds to the event's record the outcomes of the other requests of the same send
(S successes, F failures). If failures struck requests at random, whatever their rate,
all requests would be alike, and the chance that the event's K requests were all among
the K + F failures of its K + S + F requests is the hypergeometric ``C(K+F, K) /
C(K+S+F, K)``. The event is dropped as poison once that chance is below
``POISON_ODDS`` (one in a billion) and it has failed alone at least
``RetryPolicy.poison_after`` times. A real poison event (it fails, the others pass)
gets there within a few sends; a healthy event under random failures almost never.

The memory is per process and per send loop, keyed by :func:`row_key` (the id and the
payload: a storage may give a deleted row's id to a new row, and a new event must not
inherit an old one's failures). A restart starts over: a few more requests, never an
event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._wire import chunk_rows
from .storage.base import EventRow

__all__ = ["POISON_ODDS", "RowMemory", "lone_failure_odds", "row_key"]

#: Below this chance of random failures explaining an event's record, it is poison.
POISON_ODDS = 1e-9


def row_key(row: EventRow) -> int:
    """This stored event's identity for per-row memory: its id and its payload."""
    return hash((row.id, row.raw))


def lone_failure_odds(alone: int, successes: int, failures: int) -> float:
    """The chance that ``alone`` requests were all failures by luck, among ``alone +
    successes + failures`` alike requests of which ``alone + failures`` failed."""
    if alone <= 0:
        return 1.0
    total_failed = alone + failures
    total = total_failed + successes
    log_odds = _log_comb(total_failed, alone) - _log_comb(total, alone)
    return math.exp(log_odds)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@dataclass(slots=True)
class _Record:
    """A lone suspect's evidence: lone failures, and the other requests of those sends."""

    alone: int = 0
    successes: int = 0
    failures: int = 0


class RowMemory:
    """Failed attempts, suspects, chunk limits and lone-failure records, by row_key."""

    __slots__ = ("attempts", "limits", "records", "suspects")

    def __init__(self) -> None:
        self.attempts: dict[int, int] = {}  # failed sends, when max_attempts is set
        self.suspects: set[int] = set()  # failed in a way that may be about content
        self.limits: dict[int, int] = {}  # most rows its request may carry
        self.records: dict[int, _Record] = {}

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

    def attempt_failed(self, key: int, max_attempts: int) -> bool:
        """Count a failed send of this row; True when it has used up ``max_attempts``."""
        self.attempts[key] = self.attempts.get(key, 0) + 1
        return self.attempts[key] >= max_attempts

    def failed(
        self,
        keys: Sequence[int],
        *,
        successes: int,
        failures: int,
        poison_after: int | None,
    ) -> bool:
        """Rows of one request failed in a way that may be about their content, while
        the send's other requests had ``successes`` and ``failures``.

        They become suspects. Several rows get requests half as large next time when
        other requests succeeded, or once without that evidence. A single row adds to
        its record; True means it is poison (see the module).
        """
        self.suspects.update(keys)
        if len(keys) > 1:
            if not successes and any(key in self.limits for key in keys):
                return False  # split once already without evidence: an outage, stop here
            limit = (len(keys) + 1) // 2
            for key in keys:
                self.limits[key] = limit
            return False
        key = keys[0]
        self.limits[key] = 1
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = _Record()
        record.alone += 1
        record.successes += successes
        record.failures += failures
        return (
            poison_after is not None
            and record.alone >= poison_after
            and lone_failure_odds(record.alone, record.successes, record.failures) < POISON_ODDS
        )

    def forget(self, keys: Iterable[int]) -> None:
        """The rows (their row_keys) were deleted (delivered or dropped)."""
        if not (self.suspects or self.attempts):
            return
        for key in keys:
            self.attempts.pop(key, None)
            self.suspects.discard(key)
            self.limits.pop(key, None)
            self.records.pop(key, None)

    def clear(self) -> None:
        self.attempts.clear()
        self.suspects.clear()
        self.limits.clear()
        self.records.clear()
