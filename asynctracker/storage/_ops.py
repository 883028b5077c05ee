"""The emitter's view of a storage: the five protocol methods plus optional fast paths.

The built-in storages offer more than the Storage protocol (a batched insert, a count,
row claims, deleting the oldest unclaimed rows, open/aclose). A user's storage may offer
none of them. These functions use the optional method when it is there and fall back to
the protocol otherwise, so the emitter never needs to ask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .._encoded import plain
from .base import EventRow, Storage
from .memory import MemoryStorage
from .sqlite import SQLiteStorage

__all__ = [
    "add_rows",
    "claim_rows",
    "close",
    "count_rows",
    "delete_oldest_rows",
    "open_storage",
    "release_rows",
    "takes_encoded",
]


async def open_storage(storage: Storage) -> None:
    opener = getattr(storage, "open", None)
    if opener is not None:
        await opener()


async def close(storage: Storage) -> None:
    closer = getattr(storage, "aclose", None)
    if closer is not None:
        await closer()


def takes_encoded(storage: Storage) -> bool:
    """Can this storage be handed the tracker's EncodedPayload text as it is?

    The built-ins' inserts store the text without looking inside. A user-written
    storage, or a subclass that overrides an insert, gets plain dicts: the type its
    author expects from ``Mapping[str, str]`` in practice (``json.dumps`` works).
    """
    cls = type(storage)
    return any(
        cls.add_event_row is builtin.add_event_row and cls.add_event_rows is builtin.add_event_rows
        for builtin in (MemoryStorage, SQLiteStorage)
        if issubclass(cls, builtin)
    )


async def add_rows(storage: Storage, payloads: Sequence[Mapping[str, str]]) -> None:
    """Store several events: in one transaction where the storage can, else one by one."""
    if not takes_encoded(storage):
        payloads = [plain(payload) for payload in payloads]
    batched = getattr(storage, "add_event_rows", None)
    if batched is not None:
        await batched(payloads)
        return
    for payload in payloads:
        await storage.add_event_row(payload)


async def count_rows(storage: Storage) -> int:
    counter = getattr(storage, "count", None)
    if counter is not None:
        return int(await counter())
    return len(await storage.get_all_event_rows())


async def claim_rows(storage: Storage, limit: int) -> list[EventRow]:
    """The oldest rows to send now. Without claims, a storage is single-process and the
    emitter's one send task is the only reader, so reading is claiming."""
    claim = getattr(storage, "claim_event_rows", None)
    if claim is not None:
        rows: list[EventRow] = await claim(limit)
        return rows
    return await storage.get_event_rows_within_range(limit)


async def release_rows(storage: Storage, ids: Sequence[int]) -> None:
    """Make claimed rows claimable again (nothing to do for storages without claims)."""
    release = getattr(storage, "release_event_rows", None)
    if release is not None and ids:
        await release(ids)


async def delete_oldest_rows(storage: Storage, count: int) -> int:
    """Delete up to ``count`` of the oldest rows not being sent; return how many."""
    delete_oldest = getattr(storage, "delete_oldest_event_rows", None)
    if delete_oldest is not None:
        return int(await delete_oldest(count))
    rows = await storage.get_event_rows_within_range(count)
    return await storage.delete_event_rows([row.id for row in rows])
