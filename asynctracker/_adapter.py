"""How the emitter sees a storage that is not a built-in one: adapted, once, to RowStore.

:func:`row_store` is called once, when the emitter is made: a built-in storage is its
own RowStore; a user's five-method Storage, or a built-in one whose subclass overrides
an insert, is wrapped in a :class:`StorageAdapter`, so the emitter calls one interface
and never asks a storage what it can do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from ._encoded import plain
from ._rowstore import Bound, Listener, RowStore, Stored, apply_bound
from .exceptions import AsyncTrackerError, StorageError
from .storage.base import EventRow, Storage

__all__ = ["StorageAdapter", "row_store", "takes_encoded"]


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
