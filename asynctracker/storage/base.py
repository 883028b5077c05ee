"""The Storage protocol and the row type every storage returns.

A storage is where events wait between ``track_*`` and delivery. The emitter only needs
the five methods of :class:`Storage` (the Go tracker's interface, made async), so a
user's own class with those methods works: the emitter adapts it, once, to the fuller
interface it calls (``_rowstore.RowStore``). The built-in storages implement that
interface themselves: a batched insert, a cheap count, and row claims that let several
processes share one SQLite file without sending an event twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Protocol, runtime_checkable

from .._encoded import EncodedPayload

__all__ = ["EventRow", "Storage", "encode_event"]


def encode_event(payload: Mapping[str, str]) -> str:
    """Compact ASCII JSON of a payload: its length in characters is its length in bytes.

    Storing events already encoded means the send loop can build POST bodies by joining
    strings and measure them with ``len`` instead of re-encoding every event. Payloads
    are flat maps of strings, so this joins C-escaped strings directly, about three
    times faster than ``json.dumps``; anything else falls back to the json module.
    """
    if type(payload) is EncodedPayload:
        return payload.raw  # built as text by the tracker (see asynctracker._encoded)
    try:
        return "{" + ",".join([_quote(k) + ":" + _quote(v) for k, v in payload.items()]) + "}"
    except TypeError:
        return _encode(payload)


_quote = encode_basestring_ascii
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


class EventRow:
    """One stored event: its storage id and its payload.

    ``event`` is a fresh ``dict`` on every access, so callers may change it freely.
    Storages that keep events as JSON text pass ``raw`` instead of ``event``; the
    emitter then sends that text without decoding it.
    """

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
    """What the emitter needs from a storage. Rows must come back oldest first.

    Implementations may also define ``async def aclose(self) -> None``; the emitter
    calls it when it closes.
    """

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
