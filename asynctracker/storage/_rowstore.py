"""The emitter's one view of a storage: :class:`RowStore`, and the adapters to it.

The Storage protocol (``base``) is the Go tracker's five methods, all a user needs to
write. The emitter needs more: a batched insert, an insert that may finish without a
coroutine, a count, row claims, dropping the oldest unclaimed rows, open and close.
The built-in storages implement RowStore in full. Anything else is wrapped once, when
the emitter is made (:func:`row_store`), so the emitter calls one interface and never
asks a storage what it can do.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence

from .._encoded import plain
from .base import EventRow, Storage

__all__ = ["RowStore", "StorageAdapter", "row_store"]


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

    @abstractmethod
    async def open(self) -> None:
        """Get ready for use (the emitter calls it on opening). Idempotent."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the storage holds (its claims included). Idempotent."""

    @abstractmethod
    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event; True once stored (the Storage protocol's insert)."""

    @abstractmethod
    def add_nowait(
        self, payload: Mapping[str, str], loop: asyncio.AbstractEventLoop | None
    ) -> Awaitable[object] | None:
        """Store one event: None when it is stored already, else an awaitable done
        once it is. ``loop`` is the running loop. The emitter's hot path: a storage
        that stores without waiting makes no coroutine per event."""

    @abstractmethod
    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """Store several events (all or none where the storage can); return how many."""

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
    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        """Delete the rows with these ids (delivered or dropped); return how many."""

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        """Delete rows this store claimed and has not released (delivered or dropped);
        return how many. A storage whose ids can be given again to new rows (SQLite's)
        deletes only rows it still holds; for the others this is delete_event_rows."""
        return await self.delete_event_rows(ids)

    @abstractmethod
    async def delete_oldest_event_rows(self, count: int) -> int:
        """Delete up to ``count`` of the oldest unclaimed rows; return how many."""

    async def bind_destination(self, collector: str) -> dict[str, int]:
        """Keep to the rows of ``collector`` from now on; return how many rows wait for
        each other collector. Only a storage shared between programs needs to: the
        default keeps every row (one emitter's store, in one process)."""
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
        return storage if takes_encoded(storage) else _PlainInserts(storage)
    return StorageAdapter(storage)


class _PlainInserts(RowStore):
    """A built-in storage whose subclass overrides an insert: every event goes through
    that override, as a plain dict; everything else is the storage's own."""

    def __init__(self, store: RowStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return repr(self._store)

    @property
    def location(self) -> str | None:
        return self._store.location

    async def open(self) -> None:
        await self._store.open()

    async def aclose(self) -> None:
        await self._store.aclose()

    def add_nowait(
        self, payload: Mapping[str, str], loop: asyncio.AbstractEventLoop | None
    ) -> Awaitable[object] | None:
        return self._store.add_event_row(plain(payload))

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        return await self._store.add_event_row(plain(payload))

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        return await self._store.add_event_rows([plain(payload) for payload in payloads])

    async def count(self) -> int:
        return await self._store.count()

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        return await self._store.claim_event_rows(limit)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        await self._store.release_event_rows(ids)

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        return await self._store.delete_event_rows(ids)

    async def delete_claimed_rows(self, ids: Sequence[int]) -> int:
        return await self._store.delete_claimed_rows(ids)

    async def delete_oldest_event_rows(self, count: int) -> int:
        return await self._store.delete_oldest_event_rows(count)

    async def bind_destination(self, collector: str) -> dict[str, int]:
        return await self._store.bind_destination(collector)


async def _nothing() -> None:
    return None


class StorageAdapter(RowStore):
    """A user's five-method Storage as a RowStore.

    Such a storage is single-process and the emitter's one send task is its only
    reader, so reading the oldest rows is claiming them and a release has nothing to
    do. Events reach it as plain dicts. Its optional ``open()`` and ``aclose()`` (see
    the Storage protocol) are looked up here, once.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._open: Callable[[], Awaitable[object]] = getattr(storage, "open", _nothing)
        self._aclose: Callable[[], Awaitable[object]] = getattr(storage, "aclose", _nothing)

    def __repr__(self) -> str:
        return repr(self.storage)

    @property
    def location(self) -> str:
        return repr(self.storage)

    async def open(self) -> None:
        await self._open()

    async def aclose(self) -> None:
        await self._aclose()

    def add_nowait(
        self, payload: Mapping[str, str], loop: asyncio.AbstractEventLoop | None
    ) -> Awaitable[object]:
        return self.storage.add_event_row(plain(payload))

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        return await self.storage.add_event_row(plain(payload))

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        """One by one: the protocol has no batched insert."""
        for payload in payloads:
            await self.storage.add_event_row(plain(payload))
        return len(payloads)

    async def count(self) -> int:
        return len(await self.storage.get_all_event_rows())

    async def claim_event_rows(self, limit: int) -> list[EventRow]:
        return await self.storage.get_event_rows_within_range(limit)

    async def release_event_rows(self, ids: Sequence[int]) -> None:
        return None

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        return await self.storage.delete_event_rows(ids)

    async def delete_oldest_event_rows(self, count: int) -> int:
        rows = await self.storage.get_event_rows_within_range(count)
        return await self.storage.delete_event_rows([row.id for row in rows])
