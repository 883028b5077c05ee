"""The Storage protocol (the Go tracker's five methods, made async: a user's class with
them works) and the row type every storage returns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .._encoded import EncodedPayload, encode_event

__all__ = ["EventRow", "Storage"]


class EventRow:
    """One stored event: its storage id and its payload, ``event`` (a fresh dict on each
    access) or ``raw`` (its JSON text, which the emitter sends without decoding)."""

    __slots__ = ("_event", "_raw", "id")

    def __init__(
        self, id: int, event: Mapping[str, str] | None = None, *, raw: str | None = None
    ) -> None:
        if (event is None) == (raw is None):
            raise TypeError("EventRow takes exactly one of event and raw")
        self.id = id
        if isinstance(event, EncodedPayload):  # already the text the row would compute
            raw = event.raw
            event = None
        self._event = dict(event) if event is not None else None
        self._raw = raw

    @property
    def event(self) -> dict[str, str]:
        """The payload as a new dict of strings."""
        if self._event is not None:
            return dict(self._event)
        assert self._raw is not None
        decoded: dict[str, str] = json.loads(self._raw)
        return decoded

    @property
    def raw(self) -> str:
        """The payload as compact ASCII JSON (computed once if the row holds a dict)."""
        if self._raw is None:
            assert self._event is not None
            self._raw = encode_event(self._event)
        return self._raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventRow) and other.id == self.id and other.event == self.event

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventRow(id={self.id}, event={self.event!r})"


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
