"""The Storage protocol (the Go tracker's five methods, made async: a user's class with
them works) and the row type every storage returns (``EventRow``, kept beside the
payload text it holds, in ``_encoded``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .._encoded import EventRow

__all__ = ["EventRow", "Storage"]


@runtime_checkable
class Storage(Protocol):
    """What the emitter needs from a storage; rows oldest first. An implementation may
    also define ``async def aclose(self) -> None``: the emitter calls it on closing."""

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        """Store one event; return True once it is stored."""
        ...

    async def delete_all_event_rows(self) -> int:
        """Delete every stored event; return how many were deleted."""
        ...

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        """Delete the events with these ids; return how many were deleted."""
        ...

    async def get_all_event_rows(self) -> list[EventRow]:
        """Every stored event, oldest first."""
        ...

    async def get_event_rows_within_range(self, event_range: int) -> list[EventRow]:
        """Up to ``event_range`` stored events, oldest first."""
        ...
