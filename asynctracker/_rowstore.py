"""The emitter's one view of a storage: :class:`RowStore`, and the insert's contract.

The built-in storages implement RowStore in full; a user's five-method Storage is
adapted to it once, by the emitter (``asynctracker._adapter``). The queue bound lives in
the insert: ``insert`` applies the emitter's :class:`Bound` in the step (SQLite: the
transaction) that stores the rows, so concurrent callers, processes sharing a file and
cancelled callers can never push the queue past it, and hands what it did (a
:class:`Stored`) to the emitter's ``listener`` in that same step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ._encoded import EventRow

__all__ = ["ONE", "Bound", "Listener", "Overflow", "RowStore", "Stored", "apply_bound", "ignore"]

Overflow: TypeAlias = Literal["drop_oldest", "drop_newest", "raise"]


@dataclass(frozen=True, slots=True)
class Bound:
    """At most ``max_events`` rows; ``overflow`` says what gives way at the bound."""

    max_events: int
    overflow: Overflow


@dataclass(frozen=True, slots=True)
class Stored:
    """What one insert did: ``stored`` new rows (all of a caller's, or none); ``evicted``
    old rows dropped for them; ``refused`` new rows not stored, under ``refused_by``."""

    stored: int
    evicted: int = 0
    refused: int = 0
    refused_by: Overflow | None = None


#: Called with each insert's outcome, in the step that commits it (see the module).
Listener: TypeAlias = Callable[[Stored], None]

ONE = Stored(1)


def ignore(outcome: Stored) -> None:
    """The listener of inserts made outside an emitter: nothing counts them."""


def apply_bound(count: int, rows: int, bound: Bound | None, evictable: int) -> Stored:
    """The one rule every storage follows: storing ``rows`` new rows in a queue of
    ``count``, of which ``evictable`` could be dropped (the oldest not being sent)."""
    if bound is None or count + rows <= bound.max_events:
        return Stored(rows)
    need = count + rows - bound.max_events
    if bound.overflow != "drop_oldest" or rows > bound.max_events or need > evictable:
        return Stored(0, refused=rows, refused_by=bound.overflow)
    return Stored(rows, evicted=need)


class RowStore(ABC):
    """A storage as the emitter uses it: rows oldest first; a claimed row not claimed
    again until released (or its claim lapses). ``builtin=True``: its inserts take the
    tracker's encoded payloads as they are (``_adapter.takes_encoded``)."""

    _builtin_inserts: tuple[object, object] | None = None

    def __init_subclass__(cls, *, builtin: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if builtin:
            cls._builtin_inserts = (cls.add_event_row, cls.add_event_rows)

    @property
    @abstractmethod
    def location(self) -> str | None:
        """Where undelivered events stay after close; None: lost with the process."""

    @property
    def lost(self) -> bool:
        """True when the events this storage held are gone (its file was deleted)."""
        return False

    @abstractmethod
    async def open(self) -> None:
        """Get ready for use (the emitter calls it on opening). Idempotent."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the storage holds (its claims included). Idempotent."""

    @abstractmethod
    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event, unbounded; True once stored (the Storage protocol's insert)."""

    @abstractmethod
    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """Store several events, unbounded, all or none; return how many."""

    @abstractmethod
    def insert(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored | Awaitable[Stored]:
        """Store ``payloads`` (all or none) under ``bound``; ``listener`` gets the outcome in
        the step that commits it. A Stored when done at once, else an awaitable of it."""

    @abstractmethod
    async def count(self) -> int:
        """How many events are stored, claimed ones included."""

    @abstractmethod
    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        """Up to ``limit`` of the oldest unclaimed rows, now claimed."""

    @abstractmethod
    async def release_event_rows(self, ids: Sequence[int]) -> None:
        """Make claimed rows claimable again (their send failed)."""

    @abstractmethod
    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        """Delete rows this store claimed and still holds (delivered or dropped)."""

    @abstractmethod
    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest rows not being sent; return how many."""

    async def bind_destination(  # noqa: B027
        self, identity: str, shown: str, *, legacy: bool = False
    ) -> None:
        """Keep to this destination's rows (a storage shared between programs)."""

    async def waiting_elsewhere(self) -> dict[str, tuple[str, int]]:
        """Rows waiting for other destinations: ``{key: (shown URL, count)}``."""
        return {}
