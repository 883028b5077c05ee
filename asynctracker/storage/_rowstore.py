"""The emitter's one view of a storage: :class:`RowStore`, and the adapters to it.

The Storage protocol (``base``) is the Go tracker's five methods, all a user needs to
write. The emitter needs more: a bounded insert that reports what it stored, a count,
row claims, open and close. The built-in storages implement RowStore in full. Anything
else is wrapped once, when the emitter is made (:func:`row_store`), so the emitter calls
one interface and never asks a storage what it can do.

**The queue bound lives in the insert.** ``insert`` is given the emitter's
:class:`Bound` and applies it in the same step (SQLite: the same transaction) that
stores the rows, so concurrent callers, other processes sharing a file and cancelled
callers can never push the queue past ``max_events``. What the insert did is one
:class:`Stored`, handed to the emitter's ``listener`` in that same step, whether or not
the caller is still waiting: the emitter's counters change with the rows they count.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from .._encoded import plain
from ..exceptions import AsyncTrackerError, StorageError
from .base import EventRow, Storage

__all__ = [
    "Bound",
    "Listener",
    "Overflow",
    "RowStore",
    "Stored",
    "StorageAdapter",
    "row_store",
]

Overflow: TypeAlias = Literal["drop_oldest", "drop_newest", "raise"]


@dataclass(frozen=True, slots=True)
class Bound:
    """The queue bound an insert applies: at most ``max_events`` rows stored, and what
    gives way at the bound (the ``overflow`` policy)."""

    max_events: int
    overflow: Overflow


@dataclass(frozen=True, slots=True)
class Stored:
    """What one insert did: ``stored`` new rows committed; ``evicted`` old rows dropped
    to make room for them (``drop_oldest``); ``refused`` new rows not stored because the
    queue was full, under the policy ``refused_by``. One caller's rows are stored all
    together or not at all."""

    stored: int
    evicted: int = 0
    refused: int = 0
    refused_by: Overflow | None = None


#: Called with each insert's outcome, in the step that commits it (see the module).
Listener: TypeAlias = Callable[[Stored], None]

ONE = Stored(1)


def apply_bound(count: int, rows: int, bound: Bound | None, evictable: int) -> Stored:
    """The outcome of storing ``rows`` new rows in a queue of ``count`` rows of which
    ``evictable`` could be dropped (the oldest not being sent): the one rule every
    storage follows. Never more than ``max_events`` rows; one caller's rows all or none."""
    if bound is None or count + rows <= bound.max_events:
        return Stored(rows)
    need = count + rows - bound.max_events
    if bound.overflow != "drop_oldest" or rows > bound.max_events or need > evictable:
        return Stored(0, refused=rows, refused_by=bound.overflow)
    return Stored(rows, evicted=need)


class RowStore(ABC):
    """A storage as the emitter uses it. Rows come back oldest first; a claimed row is
    not claimed again until it is released (or its claim lapses, for storages shared
    between processes).

    A built-in storage subclasses it with ``builtin=True``: its own inserts then take
    the tracker's encoded payloads as they are (see :func:`takes_encoded`).
    """

    _builtin_inserts: tuple[object, object] | None = None

    def __init_subclass__(cls, *, builtin: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if builtin:
            cls._builtin_inserts = (cls.add_event_row, cls.add_event_rows)

    @property
    @abstractmethod
    def location(self) -> str | None:
        """Where undelivered events stay after close (for the closing warning); None
        when they live in this process only and are lost with it."""

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
        """Store ``payloads`` (all or none) under ``bound``; ``listener`` gets the
        outcome in the step that commits it. A Stored when done at once (the emitter's
        hot path makes no coroutine then), else an awaitable of it. Raises StorageError.
        """

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
        """Delete rows this store claimed and has not released (delivered or dropped);
        return how many. A storage whose ids can be given again to new rows (SQLite's)
        deletes only rows it still holds."""

    @abstractmethod
    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest rows not being sent; return how many."""

    async def bind_destination(  # noqa: B027
        self, identity: str, shown: str, *, legacy: bool = False
    ) -> None:
        """Keep to the rows of this destination from now on (``identity`` says who
        receives and is billed, ``shown`` is its URL without secrets). Only a storage
        shared between programs needs to: the default keeps every row."""

    async def waiting_elsewhere(self) -> dict[str, tuple[str, int]]:
        """Rows waiting for other destinations: ``{key: (shown URL, count)}``."""
        return {}


def takes_encoded(store: RowStore) -> bool:
    """Does this built-in storage take the tracker's EncodedPayload text as it is?

    The built-ins' inserts store the text without looking inside; a subclass that
    overrides an insert gets plain dicts, the type its author expects from
    ``Mapping[str, str]`` in practice (``json.dumps`` works).
    """
    cls = type(store)
    inserts = cls._builtin_inserts
    return inserts is not None and inserts == (cls.add_event_row, cls.add_event_rows)


def row_store(storage: Storage) -> RowStore:
    """The RowStore the emitter uses for ``storage``: itself if it is a built-in one,
    else an adapter made here, once."""
    if isinstance(storage, RowStore):
        if takes_encoded(storage):
            return storage
        return StorageAdapter(storage, builtin=storage)
    return StorageAdapter(storage)


async def _nothing() -> None:
    return None


class StorageAdapter(RowStore):
    """A user's five-method Storage (or a built-in one whose inserts a subclass
    overrides) as a RowStore.

    Events reach its inserts as plain dicts, one by one. Its queue bound is kept
    here: such a storage has one writer, this emitter, so a count kept beside it
    (read once at opening) and one asyncio lock make the bound exact. Without
    ``builtin`` (a user's storage), the emitter's one send task is its only reader:
    reading the oldest rows is claiming them and a release has nothing to do. Its
    optional ``open()`` and ``aclose()`` are looked up here, once.
    """

    def __init__(self, storage: Storage, *, builtin: RowStore | None = None) -> None:
        self.storage = storage
        self._builtin = builtin
        self._open: Callable[[], Awaitable[object]] = getattr(storage, "open", _nothing)
        self._aclose: Callable[[], Awaitable[object]] = getattr(storage, "aclose", _nothing)
        self._count: int | None = None
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return repr(self.storage)

    @property
    def location(self) -> str | None:
        return self._builtin.location if self._builtin is not None else repr(self.storage)

    @property
    def lost(self) -> bool:
        return self._builtin.lost if self._builtin is not None else False

    async def open(self) -> None:
        await self._open()
        self._count = await self._count_rows()

    async def aclose(self) -> None:
        await self._aclose()

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        await self.add_event_rows([payload])
        return True

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """One by one: the protocol has no batched insert."""
        for payload in payloads:
            await self.storage.add_event_row(plain(payload))
            if self._count is not None:
                self._count += 1
        return len(payloads)

    async def insert(
        self, payloads: Sequence[Mapping[str, str]], bound: Bound | None, listener: Listener
    ) -> Stored:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # the count and the insert in one step for this emitter
            count = self._count if self._count is not None else await self._count_rows()
            outcome = apply_bound(count, len(payloads), bound, count)
            try:
                if outcome.evicted:
                    evicted = await self._evict(outcome.evicted)
                    if evicted < outcome.evicted:  # rows being sent cannot be dropped
                        outcome = Stored(0, evicted, len(payloads), "drop_oldest")
                if outcome.stored:
                    await self._add(payloads)
            except AsyncTrackerError:
                self._count = None  # unknown now: counted afresh next time
                raise
            except Exception as exc:
                self._count = None
                raise StorageError(f"storage {self.storage!r} failed to add events: {exc}") from exc
            self._count = count + outcome.stored - outcome.evicted
            listener(outcome)
            return outcome

    async def _add(self, payloads: Sequence[Mapping[str, str]]) -> None:
        """A built-in's own inserts (one, or a batch) as a subclass overrides them; a
        user's storage, one by one."""
        if self._builtin is not None and len(payloads) > 1:
            await self._builtin.add_event_rows([plain(payload) for payload in payloads])
        else:
            for payload in payloads:
                await self.storage.add_event_row(plain(payload))

    async def _evict(self, count: int) -> int:
        """Drop the ``count`` oldest rows (a built-in storage skips rows being sent)."""
        if self._builtin is not None:
            return await self._builtin.delete_oldest_event_rows(count)
        return await self.delete_oldest_event_rows(count)

    async def delete_oldest_event_rows(self, count: int) -> int:
        rows = await self.storage.get_event_rows_within_range(count)
        return await self.storage.delete_event_rows([row.id for row in rows])

    async def _count_rows(self) -> int:
        if self._builtin is not None:
            return await self._builtin.count()
        return len(await self.storage.get_all_event_rows())

    async def count(self) -> int:
        self._count = await self._count_rows()
        return self._count

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        if self._builtin is not None:
            return await self._builtin.claim_event_rows(limit)
        return await self.storage.get_event_rows_within_range(limit)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        if self._builtin is not None:
            await self._builtin.release_event_rows(ids)

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        if self._builtin is not None:
            deleted = await self._builtin.delete_claimed_rows(ids)
        else:
            deleted = await self.storage.delete_event_rows(ids)
        if self._count is not None:
            self._count = max(self._count - deleted, 0)
        return deleted

    async def bind_destination(self, identity: str, shown: str, *, legacy: bool = False) -> None:
        if self._builtin is not None:
            await self._builtin.bind_destination(identity, shown, legacy=legacy)

    async def waiting_elsewhere(self) -> dict[str, tuple[str, int]]:
        if self._builtin is not None:
            return await self._builtin.waiting_elsewhere()
        return {}
