"""The base of the event objects ``Tracker.track`` takes, and the checks they share.

Each event class (``asynctracker.events``) is a frozen dataclass with snowplow-tracker
1.x's name and arguments. Its ``__post_init__`` checks the arguments, so a mistake
raises InvalidEventError at the line that wrote the event, and keeps what the tracker
writes (``EventParts``): the protocol fields, or the self-describing data, and the
options every event has (``event_subject``, ``context``, ``true_timestamp``). The data
of self-describing events and contexts is encoded, and so checked, when it is tracked:
the tracker's ``json_encoder`` takes part.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from ._build import NO_OPTIONS, CallOptions, Timestamp
from ._checks import epoch_ms, int32
from ._checks import text as _text
from .exceptions import InvalidEventError
from .payload import SelfDescribingJson, check_contexts
from .subject import Subject

__all__ = [
    "Event",
    "EventParts",
    "TrueTimestamp",
    "bounded",
    "count",
    "optional_text",
    "parts_of",
    "required_text",
    "strings",
    "uuid_text",
]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

#: An event's ``true_timestamp``: epoch milliseconds (an int, or a float as
#: snowplow-tracker takes it, truncated to whole milliseconds) or an aware datetime.
TrueTimestamp: TypeAlias = "float | datetime"


@dataclass(frozen=True, slots=True)
class EventParts:
    """What the tracker writes for one event object.

    ``kind`` is the protocol's ``e``; ``fields`` its own fields (``ue`` events: none);
    ``self_describing`` the event's schema and data for ``ue`` events.
    """

    kind: str
    fields: dict[str, str | None]
    self_describing: SelfDescribingJson | None
    options: CallOptions


class Event:
    """An event for :meth:`asynctracker.Tracker.track`, as in snowplow-tracker 1.x.

    Every event takes ``event_subject`` (a Subject merged over the tracker's: its fields
    win, the tracker's fill in), ``context`` (a list of SelfDescribingJson entities) and
    ``true_timestamp`` (epoch milliseconds, int or float, or an aware datetime: ``ttm``).
    Events are immutable: ``dataclasses.replace(event, page_title=...)`` makes a changed
    copy, checked again.
    """

    __slots__ = ("_parts",)

    event_subject: Subject | None
    context: Sequence[SelfDescribingJson] | None
    true_timestamp: TrueTimestamp | None
    _parts: EventParts

    def _finish(
        self,
        kind: str,
        fields: dict[str, str | None] | None = None,
        self_describing: SelfDescribingJson | None = None,
        entities: Sequence[SelfDescribingJson] = (),
    ) -> None:
        """Check the options every event has and keep what the tracker will write.

        ``entities`` are sent before the event's own ``context`` (a consent event's
        document).
        """
        subject = self.event_subject
        if subject is not None and not isinstance(subject, Subject):
            raise InvalidEventError(
                f"event_subject must be an asynctracker.Subject, got {type(subject).__name__}"
            )
        context = self.context
        check_contexts(context, name="context")
        if entities:
            context = (*entities, *(context or ()))
        ttm = None if self.true_timestamp is None else true_timestamp_ms(self.true_timestamp)
        options = (
            NO_OPTIONS
            if context is None and subject is None and ttm is None
            else CallOptions(contexts=context, event_subject=subject, true_timestamp=ttm)
        )
        parts = EventParts(kind, fields or {}, self_describing, options)
        object.__setattr__(self, "_parts", parts)


def parts_of(event: Event) -> EventParts:
    """What the tracker writes for ``event`` (InvalidEventError for anything else)."""
    parts = getattr(event, "_parts", None) if isinstance(event, Event) else None
    if not isinstance(parts, EventParts):
        raise InvalidEventError(
            "track takes an event object of asynctracker.events such as PageView(...), "
            f"got {type(event).__name__}"
        )
    return parts


def true_timestamp_ms(value: object) -> Timestamp:
    """A ``true_timestamp`` as the tracker writes it: whole epoch ms, or a datetime."""
    if type(value) is float:
        if not math.isfinite(value):
            raise InvalidEventError(f"true_timestamp must be a finite number, got {value!r}")
        value = int(value)
    epoch_ms("true_timestamp", value)
    return value  # type: ignore[return-value]  # epoch_ms accepted it: an int or datetime


def required_text(name: str, value: object) -> str:
    """A required str argument (InvalidEventError for None, "" or anything not a str)."""
    return _text(name, value, required=True) or ""


def optional_text(name: str, value: object) -> str | None:
    """An optional str argument; None and "" are not sent."""
    return _text(name, value)


def uuid_text(name: str, value: object, *, required: bool = False) -> str | None:
    """A UUID string argument (as the schemas' ``format: uuid`` wants), sent as given."""
    checked = _text(name, value, required=required)
    if checked is not None and not _UUID.fullmatch(checked):
        raise InvalidEventError(f"{name} must be a UUID string, got {value!r}")
    return checked


def bounded(
    name: str, value: object, limit: int | None, *, empty: bool = False, null: bool = False
) -> str | None:
    """A str of at most ``limit`` characters (a schema's ``maxLength``); ``empty``: ``""``
    is a value; ``null``: None is a value (sent as null)."""
    if value is None and null:
        return None
    if value == "" and empty:
        return ""
    checked = required_text(name, value)
    if limit is not None and len(checked) > limit:
        raise InvalidEventError(
            f"{name} must be at most {limit} characters (the schema's limit), got {len(checked)}"
        )
    return checked


def count(name: str, value: object, *, minimum: int = 0) -> int | None:
    """An optional int of at least ``minimum`` that Enrich can hold (32 bits)."""
    if value is None:
        return None
    return int32(name, value, minimum=minimum, error=InvalidEventError)


def strings(name: str, value: object, *, required: bool = False) -> list[str] | None:
    """An optional list of str (a tuple is accepted): element classes, search terms."""
    if value is None:
        if required:
            raise InvalidEventError(f"{name} is required: a list of str")
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise InvalidEventError(f"{name} must be a list of str, got {type(value).__name__}")
    if required and not value:
        raise InvalidEventError(f"{name} must hold at least one str")
    checked = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidEventError(f"{name}[{index}] must be a str, got {type(item).__name__}")
        _text(f"{name}[{index}]", item)
        checked.append(item)
    return checked
