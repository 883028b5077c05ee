"""MemoryStorage: events kept in this process only, oldest first.

Fast and dependency-free, but gone when the process ends: use it for tests, for
short-lived scripts, or where losing queued events on a crash is acceptable.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from ..exceptions import ClosedError
from ._rowstore import ONE, Bound, Listener, RowStore, Stored, apply_bound
from .base import EventRow, encode_event

__all__ = ["MemoryStorage"]


class MemoryStorage(RowStore, builtin=True):
    """In-process storage. Ids increase and are never reused, even after deletes.

    Implements the Storage protocol and, in full, the interface the emitter uses
    (``_rowstore.RowStore``: batched insert, count, claim/release), so it behaves
    exactly like SQLiteStorage except for durability.
    """

    def __init__(self) -> None:
        self._rows: dict[int, str] = {}
        self._claimed: set[int] = set()
        self._ids = itertools.count(1)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this MemoryStorage was closed")

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event; True once stored."""
        self._check_open()
        self._rows[next(self._ids)] = encode_event(payload)
        return True

    def insert(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored:
        """Store events under ``bound``, now (the emitter's hot path: no coroutine)."""
        self._check_open()
        if len(payloads) == 1 and (bound is None or len(self._rows) < bound.max_events):
            self._rows[next(self._ids)] = encode_event(payloads[0])
            listener(ONE)
            return ONE
        encoded = [encode_event(payload) for payload in payloads]  # all or none
        outcome = apply_bound(
            len(self._rows), len(encoded), bound, len(self._rows) - len(self._claimed)
        )
        if outcome.evicted:
            self._evict(outcome.evicted)
        if outcome.stored:
            for raw in encoded:
                self._rows[next(self._ids)] = raw
        listener(outcome)
        return outcome

    @property
    def location(self) -> None:
        """None: the events live in this process only."""
        return None

    async def open(self) -> None:
        """Nothing to open; raises ClosedError after ``aclose()``."""
        self._check_open()

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """Store several events at once (all or none: encoding happens first)."""
        self._check_open()
        encoded = [encode_event(payload) for payload in payloads]
        for raw in encoded:
            self._rows[next(self._ids)] = raw
        return len(encoded)

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
        deleted = 0
        for row_id in ids:
            if self._rows.pop(row_id, None) is not None:
                deleted += 1
            self._claimed.discard(row_id)
        return deleted

    async def get_all_event_rows(self) -> list[EventRow]:
        """Every stored event, oldest first."""
        self._check_open()
        return self._to_rows(self._rows.items())

    async def get_event_rows_within_range(self, event_range: int) -> list[EventRow]:
        """Up to ``event_range`` stored events, oldest first (claimed ones included)."""
        self._check_open()
        return self._to_rows(itertools.islice(self._rows.items(), max(event_range, 0)))

    async def count(self) -> int:
        """How many events are stored, claimed ones included."""
        self._check_open()
        return len(self._rows)

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        """The oldest unclaimed rows, now claimed until deleted or released."""
        self._check_open()
        picked: list[tuple[int, str]] = []
        for item in self._rows.items():
            if len(picked) >= limit:
                break
            if item[0] not in self._claimed:
                picked.append(item)
        self._claimed.update(row_id for row_id, _ in picked)
        return self._to_rows(picked)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        """Make claimed rows available to claim again (their send failed)."""
        self._check_open()
        self._claimed.difference_update(ids)

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        """Delete claimed rows (delivered or dropped); return how many existed."""
        return await self.delete_event_rows(ids)

    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest unclaimed rows (overflow: drop oldest)."""
        self._check_open()
        return self._evict(count)

    def _evict(self, count: int) -> int:
        victims: list[int] = []
        for row_id in self._rows:
            if len(victims) >= count:
                break
            if row_id not in self._claimed:
                victims.append(row_id)
        for row_id in victims:
            del self._rows[row_id]
        return len(victims)

    async def aclose(self) -> None:
        """Forget every event and refuse further use. Idempotent."""
        self._closed = True
        self._rows.clear()
        self._claimed.clear()

    @staticmethod
    def _to_rows(items: Iterable[tuple[int, str]]) -> list[EventRow]:
        return [EventRow(row_id, raw=raw) for row_id, raw in items]
