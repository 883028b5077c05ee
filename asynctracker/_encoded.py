"""Payloads written straight into the JSON text that storages keep.

Every stored event is compact ASCII JSON (:func:`encode_event`). Building a
dict per event and then encoding it quoted every key and every value; the tracker
knows its keys in advance, so it writes the text itself: keys quoted once and cached,
values escaped by the json module's C function, no dict in between: the event loop's
work per tracked event shrinks by a large share (benchmarks/README.md has the figure).

Only the built-in storages see this text; a user-written storage is handed a plain
dict (``plain``), so ``json.dumps(payload)`` and the like keep working there. A stored
row, :class:`EventRow` (public as ``asynctracker.storage.EventRow``), holds it with its id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from json.encoder import encode_basestring_ascii

__all__ = ["EncodedPayload", "EventRow", "encode_event", "member", "plain", "quote"]

#: A str as a JSON string literal, non-ASCII and control characters escaped.
quote = encode_basestring_ascii

_MEMBER_PREFIXES: dict[str, str] = {}


def member(key: str, value: str) -> str:
    """``,"key":"value"``: one member of a JSON object, after its first."""
    prefix = _MEMBER_PREFIXES.get(key)
    if prefix is None:
        prefix = _MEMBER_PREFIXES[key] = f",{quote(key)}:"
    return prefix + quote(value)


class EncodedPayload(Mapping[str, str]):
    """A payload held as its compact ASCII JSON text (``raw``) and its event id.

    Read-only: the built-in storages store ``raw`` as it is; anything that reads keys
    (a test, a debugger) gets them from a dict decoded once, on first access.
    """

    __slots__ = ("_decoded", "eid", "raw")

    def __init__(self, raw: str, eid: str) -> None:
        self.raw = raw
        self.eid = eid
        self._decoded: dict[str, str] | None = None

    def _mapping(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = json.loads(self.raw)
        return self._decoded

    def __getitem__(self, key: str) -> str:
        return self._mapping()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return f"EncodedPayload({self._mapping()!r})"


def plain(payload: Mapping[str, str]) -> Mapping[str, str]:
    """The payload as a plain dict if it is an EncodedPayload, else as it is."""
    if type(payload) is EncodedPayload:
        decoded: dict[str, str] = json.loads(payload.raw)
        return decoded
    return payload


def encode_event(payload: Mapping[str, str]) -> str:
    """Compact ASCII JSON of a payload: its length in characters is its length in bytes.

    Storing events already encoded lets the send loop build POST bodies by joining
    strings and measure them with ``len``. A flat map of strings is written by joining
    C-escaped strings; anything else falls back to the json module.
    """
    if type(payload) is EncodedPayload:
        return payload.raw  # built as text by the tracker
    try:
        return "{" + ",".join([quote(k) + ":" + quote(v) for k, v in payload.items()]) + "}"
    except TypeError:
        return _encode(payload)


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


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
