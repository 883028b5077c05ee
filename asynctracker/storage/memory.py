"""MemoryStorage: events kept in this process only, oldest first; fast, but gone when
the process ends (tests, short scripts, or where losing queued events is acceptable)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from .._encoded import encode_event
from .._rowstore import ONE, Bound, Listener, RowStore, Stored, apply_bound, ignore
from ..exceptions import ClosedError
from .base import EventRow

__all__ = ["MemoryStorage"]


class MemoryStorage(RowStore, builtin=True):
    """In-process storage, ids never reused: SQLiteStorage's behaviour but durability."""

    def __init__(self) -> None:
        self._rows: dict[int, str] = {}
        self._claimed: set[int] = set()
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def location(self) -> None:
        """None: the events live in this process only."""
        return None

    async def open(self) -> None:
        """Nothing to open; raises ClosedError after ``aclose()``."""
        self._check_open()

    async def aclose(self) -> None:
        """Forget every event and refuse further use. Idempotent."""
        self._closed = True
        self._rows.clear()
        self._claimed.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this MemoryStorage was closed")

    def insert(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored:
        """Store events under ``bound``, now (the emitter's hot path: no coroutine)."""
        self._check_open()
        rows = self._rows
        if len(payloads) == 1 and (bound is None or len(rows) < bound.max_events):
            rows[next(self._ids)] = encode_event(payloads[0])
            listener(ONE)
            return ONE
        encoded = [encode_event(payload) for payload in payloads]  # all or none
        outcome = apply_bound(len(rows), len(encoded), bound, len(rows) - len(self._claimed))
        for row_id in self._oldest_unclaimed(outcome.evicted):
            del rows[row_id]
        if outcome.stored:
            rows.update((row_id, raw) for raw, row_id in zip(encoded, self._ids))  # noqa: B905
        listener(outcome)
        return outcome

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event; True once stored."""
        self.insert([payload], None, ignore)
        return True

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """Store several events at once (all or none: encoding happens first)."""
        return self.insert(payloads, None, ignore).stored

    async def delete_all_event_rows(self) -> int:
        """Delete every stored event (claimed ones too); return how many."""
        self._check_open()
        count = len(self._rows)
        self._rows.clear()
        self._claimed.clear()
        return count

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        """Delete the events with these ids; return how many existed."""
        self._check_open()
        self._claimed.difference_update(ids)
        return sum(self._rows.pop(row_id, None) is not None for row_id in ids)

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        """Delete claimed rows (delivered or dropped); return how many existed."""
        return await self.delete_event_rows(ids)

    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest unclaimed rows (overflow: drop oldest)."""
        self._check_open()
        victims = self._oldest_unclaimed(count)
        for row_id in victims:
            del self._rows[row_id]
        return len(victims)

    async def get_all_event_rows(self) -> list[EventRow]:
        """Every stored event, oldest first."""
        self._check_open()
        return _to_rows(self._rows.items())

    async def get_event_rows_within_range(self, event_range: int) -> list[EventRow]:
        """Up to ``event_range`` stored events, oldest first (claimed ones included)."""
        self._check_open()
        return _to_rows(itertools.islice(self._rows.items(), max(event_range, 0)))

    async def count(self) -> int:
        """How many events are stored, claimed ones included."""
        self._check_open()
        return len(self._rows)

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        """The oldest unclaimed rows, now claimed until deleted or released."""
        self._check_open()
        picked = self._oldest_unclaimed(limit)
        self._claimed.update(picked)
        return _to_rows((row_id, self._rows[row_id]) for row_id in picked)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        """Make claimed rows available to claim again (their send failed)."""
        self._check_open()
        self._claimed.difference_update(ids)

    def _oldest_unclaimed(self, count: int) -> list[int]:
        claimed = self._claimed
        return list(itertools.islice((i for i in self._rows if i not in claimed), max(count, 0)))


def _to_rows(items: Iterable[tuple[int, str]]) -> list[EventRow]:
    return [EventRow(row_id, raw=raw) for row_id, raw in items]
