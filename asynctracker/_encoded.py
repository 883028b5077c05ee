"""Payloads written straight into the JSON text that storages keep.

Every stored event is compact ASCII JSON (:func:`encode_event`). Building a
dict per event and then encoding it quoted every key and every value; the tracker
knows its keys in advance, so it writes the text itself: keys quoted once and cached,
values escaped by the json module's C function, no dict in between: the event loop's
work per tracked event shrinks by a large share (benchmarks/README.md has the figure).

Only the built-in storages see this text; a user-written storage is handed a plain
dict (``plain``), so ``json.dumps(payload)`` and the like keep working there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from json.encoder import encode_basestring_ascii

__all__ = ["EncodedPayload", "encode_event", "member", "plain", "quote"]

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
