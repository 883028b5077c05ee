"""Tracker state -> payload text: the part of a ``track_*`` call that runs per event.

``EventBuilder`` is the Tracker's base class: it holds what every event gets from the
tracker (its fields, Subject, contexts and providers) and writes one event's protocol
payload directly as the JSON text storages keep (see ``_encoded``). The Tracker adds
the options, the lifecycle and the public ``track_*`` calls.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TypeAlias

from . import _contexts
from ._checks import epoch_ms
from ._contexts import ContextProvider
from ._encoded import EncodedPayload, member, quote
from ._request_scope import bound_subject
from ._version import __version__
from .emitter import Emitter
from .exceptions import ClosedError, InvalidEventError
from .payload import (
    MAX_JSON_DEPTH,
    UNSTRUCT_EVENT_SCHEMA,
    JSONValue,
    SelfDescribingJson,
    check_contexts,
    contexts_json,
    entity_json,
    json_field,
    json_text_field,
    new_event_id,
)
from .subject import Subject

__all__ = ["TRACKER_VERSION", "EventBuilder", "Timestamp", "checked_event_id"]

Timestamp: TypeAlias = "int | datetime"
#: ``tv``: this library's own name, so its events are never mistaken for the official
#: Python tracker's (``py-<version>``) in the warehouse. Enrich keeps at most 100 chars.
TRACKER_VERSION = f"asynctracker-{__version__}"


def checked_event_id(value: str) -> str:
    """A caller's event id, checked and in canonical form."""
    try:
        return str(uuid.UUID(value))
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidEventError(f"event_id must be a UUID string, got {value!r}") from exc


#: The arguments every ``track_*`` call takes besides its own: contexts, subject,
#: event_id, timestamp, true_timestamp; then the entities the tracker's context
#: providers gave for this call (None without providers). A plain tuple: cheaper to
#: make per event.
_Common: TypeAlias = tuple[
    "Sequence[SelfDescribingJson] | None",
    "Subject | None",
    "str | None",
    "Timestamp | None",
    "Timestamp | None",
    "list[str] | None",
]


class EventBuilder:
    """Writes events from the tracker's state; the Tracker's private base class."""

    emitter: Emitter
    platform: str
    namespace: str | None
    app_id: str | None
    base64_encode: bool
    subject: Subject | None
    _tracker_json: tuple[str, str] | None = None
    _static_json: tuple[str, ...] = ()
    #: The ``cx``/``co`` member of the static contexts alone, by ``base64_encode``.
    _static_members: dict[bool, str]
    _context_providers: tuple[ContextProvider, ...] = ()

    def _make_tracker_json(self) -> tuple[str, str]:
        """``p`` as a JSON string, and the ``tna``/``aid`` members (empty ones left out)."""
        members = ""
        if self.namespace:
            members += member("tna", self.namespace)
        if self.app_id:
            members += member("aid", self.app_id)
        return quote(self.platform), members

    async def _provide(self) -> list[str]:
        """The context providers' entities for one call (only called when there are some)."""
        return await _contexts.provide(self._context_providers)

    def _payload(
        self,
        event: str,
        common: _Common,
        fields: dict[str, str | None],
        last: tuple[str, str] | None = None,
    ) -> EncodedPayload:
        """The protocol payload: tracker fields, subject, ``fields``, contexts, ``last``.

        Written directly as the JSON text storages keep (see ``_encoded``), members in
        that order; empty event fields are left out.
        """
        if self.emitter.closed:
            raise ClosedError("this tracker's emitter was closed")
        contexts, subject, event_id, timestamp, true_timestamp, provided = common
        if subject is not None and not isinstance(subject, Subject):
            raise InvalidEventError("subject must be an asynctracker.Subject")
        if contexts is not None:
            check_contexts(contexts)
        # The common case (no event_id, no timestamps) calls no helper: this runs per event.
        eid = new_event_id() if event_id is None else checked_event_id(event_id)
        dtm = (
            str(time.time_ns() // 1_000_000)
            if timestamp is None
            else epoch_ms("timestamp", timestamp)
        )
        tracker_json = self._tracker_json
        if tracker_json is None:
            tracker_json = self._tracker_json = self._make_tracker_json()
        platform, tracker_members = tracker_json
        # event, the version, a canonical UUID and digits need no escaping.
        parts = [
            f'{{"e":"{event}","tv":"{TRACKER_VERSION}","p":{platform},'
            f'"eid":"{eid}","dtm":"{dtm}"{tracker_members}'
        ]
        if true_timestamp is not None:
            parts.append(member("ttm", epoch_ms("true_timestamp", true_timestamp)))
        chosen = subject if subject is not None else (bound_subject() or self.subject)
        if chosen is not None:
            parts.extend([member(key, value) for key, value in chosen._fields.items()])
        for key, value in fields.items():
            if value:
                parts.append(member(key, value))
        if contexts or provided:
            parts.append(self._contexts_member(contexts, provided))
        elif self._static_json:
            # Only the tracker's own contexts: the same member for every event.
            static = self._static_members.get(self.base64_encode)
            if static is None:
                static = self._static_members[self.base64_encode] = self._contexts_member()
            parts.append(static)
        if last is not None:
            parts.append(member(*last))
        parts.append("}")
        return EncodedPayload("".join(parts), eid)

    def _contexts_member(
        self,
        contexts: Sequence[SelfDescribingJson] | None = None,
        provided: list[str] | None = None,
    ) -> str:
        """``cx``/``co``: the call's contexts, the tracker's, then the providers'.

        Entities are written one by one: the tracker's static ones were written once,
        when it was made, and the providers' as they came.
        """
        texts = [
            entity_json(context, name=f"contexts[{index}] data")
            for index, context in enumerate(contexts or ())
        ]
        texts += self._static_json
        if provided:
            texts += provided
        return member(
            *json_text_field(
                contexts_json(texts),
                base64_encode=self.base64_encode,
                encoded_key="cx",
                raw_key="co",
            )
        )

    def _self_describing(self, event_json: SelfDescribingJson, common: _Common) -> EncodedPayload:
        if not isinstance(event_json, SelfDescribingJson):
            raise InvalidEventError("the event must be a SelfDescribingJson")
        return self._unstruct(event_json.schema, event_json.data, common)

    def _unstruct(self, schema: str, data: JSONValue, common: _Common) -> EncodedPayload:
        """A self-describing event of ``schema``: its data is checked once, here, as it
        is written (the tracker's own events, screen view and timing, build no
        SelfDescribingJson, whose constructor would check it a second time)."""
        return self._payload(
            "ue",
            common,
            {},
            json_field(
                {"schema": UNSTRUCT_EVENT_SCHEMA, "data": {"schema": schema, "data": data}},
                base64_encode=self.base64_encode,
                encoded_key="ue_px",
                raw_key="ue_pr",
                name="the event's data",
                # The event's data sits two levels down: {data: {data: ...}}.
                max_depth=MAX_JSON_DEPTH + 2,
            ),
        )
