"""Tracker state -> payload text -> emitters: the part of a ``track*`` call that runs per event.

``EventBuilder`` is the Tracker's base class: it holds what every event gets from the
tracker (its fields, Subject, contexts, providers, hooks and emitters), writes one
event's protocol payload directly as the JSON text storages keep (see ``_encoded``) and
hands it to every emitter. The Tracker adds the options, the lifecycle and the public
``track*`` calls.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from . import _contexts
from ._checks import epoch_ms
from ._contexts import ContextProvider
from ._emitters import EmitterGroup
from ._encoded import EncodedPayload, member, quote
from ._hooks import BeforeTrack, run_hooks
from ._request_scope import bound_subject
from ._version import __version__
from .emitter import Emitter
from .exceptions import ClosedError, InvalidEventError
from .payload import (
    MAX_JSON_DEPTH,
    UNSTRUCT_EVENT_SCHEMA,
    JsonEncoder,
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

__all__ = [
    "NO_OPTIONS",
    "TRACKER_VERSION",
    "CallOptions",
    "EventBuilder",
    "Timestamp",
    "call_options",
    "checked_event_id",
]

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


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What one event carries besides its own fields, as the call or event object gave it.

    ``subject`` (a ``track_*`` call's ``subject=``) replaces the tracker's Subject;
    ``event_subject`` (an event object's) is merged over it, its fields winning.
    ``true_timestamp`` is checked when it is written.
    """

    contexts: Sequence[SelfDescribingJson] | None = None
    subject: Subject | None = None
    event_subject: Subject | None = None
    event_id: str | None = None
    timestamp: Timestamp | None = None
    true_timestamp: Timestamp | None = None


#: The options of a call that gives none: shared, so that the common call makes no object.
NO_OPTIONS = CallOptions()
#: A call's contexts are encoded this many at a time, the event loop's other tasks
#: running in between, so one call with thousands of entities never holds the loop for
#: all of them at once.
CONTEXTS_PER_STEP = 100


class _Unfinished(EncodedPayload):
    """A payload whose many contexts are still to be written, in steps (see ``_finish``):
    the text before them, the entities, the text after them."""

    __slots__ = ("after", "before", "contexts", "provided")

    def __init__(
        self,
        before: str,
        contexts: Sequence[SelfDescribingJson],
        provided: list[str] | None,
        after: str,
        eid: str,
    ) -> None:
        super().__init__("", eid)
        self.before = before
        self.contexts = contexts
        self.provided = provided
        self.after = after


def call_options(
    contexts: Sequence[SelfDescribingJson] | None,
    subject: Subject | None,
    event_id: str | None,
    timestamp: Timestamp | None,
    true_timestamp: Timestamp | None,
) -> CallOptions:
    """A ``track_*`` call's options; NO_OPTIONS when it gives none (each frozen
    dataclass made costs a little on every event)."""
    if (
        contexts is None
        and subject is None
        and event_id is None
        and timestamp is None
        and true_timestamp is None
    ):
        return NO_OPTIONS
    return CallOptions(contexts, subject, None, event_id, timestamp, true_timestamp)


class EventBuilder:
    """Writes events from the tracker's state and stores them; the Tracker's private base."""

    _emitters: EmitterGroup
    platform: str
    namespace: str | None
    app_id: str | None
    base64_encode: bool
    subject: Subject | None
    json_encoder: JsonEncoder | None = None
    _hooks: tuple[BeforeTrack, ...] = ()
    #: The one emitter when there is one and no hook: events go straight to it.
    _direct: Emitter | None = None
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
        return await _contexts.provide(self._context_providers, self.json_encoder)

    def _payload(
        self,
        event: str,
        options: CallOptions,
        provided: list[str] | None,
        fields: dict[str, str | None],
        last: tuple[str, str] | None = None,
    ) -> EncodedPayload:
        """The protocol payload: tracker fields, subject, ``fields``, contexts, ``last``.

        Written directly as the JSON text storages keep (see ``_encoded``), members in
        that order; empty event fields are left out.
        """
        direct = self._direct
        if direct.closed if direct is not None else self._emitters.closed:
            raise ClosedError("this tracker's emitter was closed")
        contexts = options.contexts
        subject = options.subject
        if subject is not None and not isinstance(subject, Subject):
            raise InvalidEventError("subject must be an asynctracker.Subject")
        if contexts is not None:
            check_contexts(contexts)
        # The common case (no option) calls no helper: this runs per event.
        eid = new_event_id() if options.event_id is None else checked_event_id(options.event_id)
        dtm = (
            str(time.time_ns() // 1_000_000)
            if options.timestamp is None
            else epoch_ms("timestamp", options.timestamp)
        )
        tracker_json = self._tracker_json
        if tracker_json is None:
            tracker_json = self._tracker_json = self._make_tracker_json()
        platform, tracker_members = tracker_json
        # Precedence: the call's subject= replaces the bound Subject, which replaces the
        # tracker's; an event object's event_subject is merged over the one chosen.
        chosen = subject if subject is not None else (bound_subject() or self.subject)
        subject_fields = None if chosen is None else chosen._fields
        if options.event_subject is not None:
            own = options.event_subject._fields
            subject_fields = own if subject_fields is None else {**subject_fields, **own}
        if subject_fields and "p" in subject_fields:
            # A Subject's set_platform wins over the tracker's platform.
            subject_fields = dict(subject_fields)
            platform = quote(subject_fields.pop("p"))
        # event, the version, a canonical UUID and digits need no escaping.
        parts = [
            f'{{"e":"{event}","tv":"{TRACKER_VERSION}","p":{platform},'
            f'"eid":"{eid}","dtm":"{dtm}"{tracker_members}'
        ]
        if options.true_timestamp is not None:
            parts.append(member("ttm", epoch_ms("true_timestamp", options.true_timestamp)))
        if subject_fields:
            parts.extend([member(key, value) for key, value in subject_fields.items()])
        for key, value in fields.items():
            if value:
                parts.append(member(key, value))
        if contexts and len(contexts) > CONTEXTS_PER_STEP:
            tail = "" if last is None else member(*last)
            return _Unfinished("".join(parts), contexts, provided, tail + "}", eid)
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

    def _entities(self, contexts: Sequence[SelfDescribingJson], start: int = 0) -> list[str]:
        """The call's contexts as JSON text (``start``: the index of the first)."""
        encoder = self.json_encoder
        return [
            entity_json(context, name=f"contexts[{index}] data", default=encoder)
            for index, context in enumerate(contexts, start)
        ]

    async def _finish(self, payload: _Unfinished) -> EncodedPayload:
        """Write a payload's many contexts, a step at a time (see CONTEXTS_PER_STEP)."""
        contexts = payload.contexts
        texts: list[str] = []
        for start in range(0, len(contexts), CONTEXTS_PER_STEP):
            if start:
                await asyncio.sleep(0)
            texts += self._entities(contexts[start : start + CONTEXTS_PER_STEP], start)
        contexts_member = self._contexts_member(None, payload.provided, texts)
        return EncodedPayload(payload.before + contexts_member + payload.after, payload.eid)

    def _contexts_member(
        self,
        contexts: Sequence[SelfDescribingJson] | None = None,
        provided: list[str] | None = None,
        written: list[str] | None = None,
    ) -> str:
        """``cx``/``co``: the call's contexts (or their ``written`` text), the
        tracker's, then the providers'.

        Entities are written one by one: the tracker's static ones were written once,
        when it was made, and the providers' as they came.
        """
        texts = written if written is not None else self._entities(contexts or ())
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

    def _self_describing(
        self, event_json: SelfDescribingJson, options: CallOptions, provided: list[str] | None
    ) -> EncodedPayload:
        if not isinstance(event_json, SelfDescribingJson):
            raise InvalidEventError("the event must be a SelfDescribingJson")
        return self._unstruct(event_json.schema, event_json.data, options, provided)

    def _unstruct(
        self, schema: str, data: JSONValue, options: CallOptions, provided: list[str] | None
    ) -> EncodedPayload:
        """A self-describing event of ``schema``: its data is checked once, here, as it
        is written (with the tracker's ``json_encoder`` for values JSON cannot encode)."""
        return self._payload(
            "ue",
            options,
            provided,
            {},
            json_field(
                {"schema": UNSTRUCT_EVENT_SCHEMA, "data": {"schema": schema, "data": data}},
                base64_encode=self.base64_encode,
                encoded_key="ue_px",
                raw_key="ue_pr",
                name="the event's data",
                # The event's data sits two levels down: {data: {data: ...}}.
                max_depth=MAX_JSON_DEPTH + 2,
                default=self.json_encoder,
            ),
        )

    # -- storing: hooks, then every emitter ---------------------------------------------

    def _route(self) -> None:
        """Choose the path events take; called whenever the emitters or hooks change."""
        members = self._emitters.members
        self._direct = members[0] if len(members) == 1 and not self._hooks else None

    def _store(self, payload: EncodedPayload) -> Awaitable[None]:
        """Store one event in every emitter (a plain call: the common case, one emitter
        and no hook, awaits the emitter's ``add`` itself)."""
        direct = self._direct
        if direct is not None and type(payload) is not _Unfinished:
            return direct.add(payload)
        return self._store_all([payload], together=False)

    def _store_together(self, payloads: list[EncodedPayload]) -> Awaitable[None]:
        """Store events together (all or none where the storage can) in every emitter."""
        direct = self._direct
        if direct is not None and not any(type(p) is _Unfinished for p in payloads):
            return direct.add_many(payloads)
        return self._store_all(payloads, together=True)

    async def _store_all(self, payloads: list[EncodedPayload], *, together: bool) -> None:
        """Finish payloads with many contexts, run the hooks once, then store the events
        in every emitter (``together``: all or none, with ``add_many``)."""
        payloads = [await self._finish(p) if isinstance(p, _Unfinished) else p for p in payloads]
        if self._hooks:
            kept = []
            for payload in payloads:
                changed = run_hooks(
                    payload,
                    self._hooks,
                    base64_encode=self.base64_encode,
                    json_encoder=self.json_encoder,
                )
                if changed is not None:
                    kept.append(changed)
            if not kept:
                return
            payloads = kept
        await self._emitters.add(payloads, together=together)
