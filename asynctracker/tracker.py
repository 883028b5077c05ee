"""The Tracker: turns ``track(event)`` and ``track_*`` calls into protocol payloads and
hands them to its emitters.

Every argument is checked before anything is stored, so a bad call raises
InvalidEventError at the call site and leaves the queue untouched. Each call returns the
new event's id once the event is in storage; delivery happens in the background and
its problems are never raised here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal, TypeAlias, TypeVar

from . import _contexts
from ._build import EventBuilder, Timestamp, call_options
from ._checks import finite_number, flush_timeout, setting_text
from ._checks import platform as check_platform
from ._checks import text as _text
from ._contexts import ContextProvider
from ._ecommerce import EcommerceItem, checked_items, item_fields
from ._emitters import EmitterGroup
from ._event import Event, parts_of
from ._hooks import BeforeTrack, checked_hooks
from .emitter import Emitter
from .exceptions import ConfigurationError, InvalidEventError
from .payload import (
    SCREEN_VIEW_SCHEMA,
    TIMING_SCHEMA,
    JsonEncoder,
    SelfDescribingJson,
    format_money,
    format_number,
)
from .subject import Subject

__all__ = ["EcommerceItem", "Platform", "Timestamp", "Tracker"]

Platform: TypeAlias = Literal["web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"]
_TRACKER_FIELDS = frozenset({"namespace", "app_id", "platform"})

_TrackerT = TypeVar("_TrackerT", bound="Tracker")


class Tracker(EventBuilder):
    """Builds events and passes them to its emitters.

    Args:
        emitters: where events go: one Emitter, or a list of them (snowplow-tracker's
            ``emitters``). Each stores and sends every event, under the same event id;
            one that fails (its storage raising, its collector down) never keeps the
            others from getting the event: the call raises the first error after all
            were tried. Several trackers may share an emitter.
        namespace: ``tna``, tells this tracker's events apart from other trackers'.
        app_id: ``aid``, the application the events belong to.
        platform: ``p``, one of the protocol's platform codes (default ``"srv"``); a
            Subject's ``set_platform`` wins over it.
        base64_encode: send self-describing JSON and contexts base64url-encoded
            (``ue_px``/``cx``, default) or as raw JSON (``ue_pr``/``co``).
            ``encode_base64`` is snowplow-tracker's name for it.
        subject: default Subject for every event. Precedence, for one event: a
            ``track_*`` call's ``subject=`` replaces it, and so does the Subject bound
            to the current request with :func:`asynctracker.bind_subject` (the call's
            first, then the bound one, then this one); an event object's
            ``event_subject`` is merged over whichever of those applies, its fields
            winning and the others filling in (as snowplow-tracker 1.x merges it).
        contexts: entities (SelfDescribingJson) added to every event, after the call's
            own contexts.
        context_providers: callables, sync or async, taking no arguments, asked once
            per call for entities to add after the static ``contexts``: a
            SelfDescribingJson, a list of them, or None. They run on the event loop,
            so keep them quick; one that raises or returns anything else makes the
            call raise ContextProviderError and store nothing.
        json_encoder: like ``json.dumps``' ``default=``, called with each value of
            self-describing data or contexts that JSON cannot encode (a datetime, a
            Decimal, a UUID), returning one it can or raising TypeError; a value nothing
            encodes makes the call raise InvalidEventError and store nothing.
        before_track: functions called with each event (a TrackedEvent) after it is
            built and before any emitter stores it, in order: they may change its
            fields, self-describing data and contexts, or drop it. One that raises
            makes the call raise BeforeTrackError naming it; nothing is stored.

    ``async with tracker:`` opens the emitters and, on the way out, flushes (each bounded
    by its ``close_timeout``) and closes them.
    """

    def __init__(
        self,
        emitters: Emitter | Sequence[Emitter],
        *,
        namespace: str | None = None,
        app_id: str | None = None,
        platform: Platform = "srv",
        base64_encode: bool = True,
        subject: Subject | None = None,
        contexts: Sequence[SelfDescribingJson] | None = None,
        context_providers: Sequence[ContextProvider] | None = None,
        json_encoder: JsonEncoder | None = None,
        before_track: Sequence[BeforeTrack] | None = None,
        encode_base64: bool | None = None,
    ) -> None:
        if subject is not None and not isinstance(subject, Subject):
            raise ConfigurationError("subject must be an asynctracker.Subject")
        if json_encoder is not None and not callable(json_encoder):
            raise ConfigurationError("json_encoder must be callable, like json.dumps' default")
        self._emitters = EmitterGroup(emitters)
        self._hooks = checked_hooks(before_track)
        self._route()
        # Checked by __setattr__, here and whenever they are changed later.
        self.platform: Platform = platform
        self.namespace = namespace
        self.app_id = app_id
        self.base64_encode = bool(base64_encode if encode_base64 is None else encode_base64)
        self.subject = subject
        self.json_encoder = json_encoder
        self._static_json = _contexts.static_json(contexts, json_encoder)
        self._static_members = {}
        self._context_providers = _contexts.providers(context_providers)

    def __setattr__(self, name: str, value: object) -> None:
        if name in _TRACKER_FIELDS:
            if name == "platform":
                check_platform(value)
            elif value is not None:
                setting_text(name, value)
            # The JSON of these three is written into every event: made again on next use.
            object.__setattr__(self, "_tracker_json", None)
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        emitters = " ".join(repr(emitter) for emitter in self._emitters.members)
        return f"<Tracker namespace={self.namespace!r} app_id={self.app_id!r} {emitters}>"

    @property
    def emitters(self) -> tuple[Emitter, ...]:
        """The emitters every event goes to, in order."""
        return self._emitters.members

    @property
    def emitter(self) -> Emitter:
        """The tracker's one emitter (ConfigurationError when it has several)."""
        members = self._emitters.members
        if len(members) != 1:
            raise ConfigurationError(f"this tracker has {len(members)} emitters: use .emitters")
        return members[0]

    def add_emitter(self, emitter: Emitter) -> Tracker:
        """Send the events tracked from now on to ``emitter`` too (it opens on its first
        event, and ``async with tracker`` closes it with the others)."""
        self._emitters = self._emitters.added(emitter)
        self._route()
        return self

    def set_subject(self, subject: Subject | None) -> Tracker:
        """Replace the default Subject (None: no subject fields)."""
        if subject is not None and not isinstance(subject, Subject):
            raise ConfigurationError("subject must be an asynctracker.Subject")
        self.subject = subject
        return self

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self: _TrackerT) -> _TrackerT:
        """Open every emitter (all or none)."""
        await self._emitters.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._emitters.exit(*exc_info)

    async def flush(self, timeout: float | None = None) -> int:
        """Wait for delivery; return the number of events still stored (Emitter.flush),
        summed over the emitters, which flush at the same time.

        ``timeout`` is in seconds; None or infinity wait without limit. NaN and negative
        values raise ConfigurationError (a ValueError).
        """
        return await self._emitters.flush(flush_timeout(timeout))

    async def aclose(self) -> None:
        """Close the emitters (without flushing). Idempotent."""
        await self._emitters.aclose()

    # -- the Event API ---------------------------------------------------------------

    async def track(self, event: Event) -> str:
        """Track an event object from :mod:`asynctracker.events` (``PageView(...)``, ...),
        as snowplow-tracker 1.x's ``track`` does; returns the event id.

        Its ``event_subject`` is merged over the tracker's Subject (see above). Its
        self-describing data and contexts are encoded here, with ``json_encoder``: data
        that cannot be encoded raises InvalidEventError, and nothing is stored.
        """
        parts = parts_of(event)
        provided = await self._provide() if self._context_providers else None
        described = parts.self_describing
        if described is None:
            payload = self._payload(parts.kind, parts.options, provided, parts.fields)
        else:
            payload = self._unstruct(described.schema, described.data, parts.options, provided)
        await self._store(payload)
        return payload.eid

    # -- track_* ------------------------------------------------------------------------

    async def track_page_view(
        self,
        page_url: str,
        page_title: str | None = None,
        referrer: str | None = None,
        *,
        contexts: Sequence[SelfDescribingJson] | None = None,
        subject: Subject | None = None,
        event_id: str | None = None,
        timestamp: Timestamp | None = None,
        true_timestamp: Timestamp | None = None,
    ) -> str:
        """Track a page view (``e=pv``); ``page_url`` is required. Returns the event id."""
        provided = await self._provide() if self._context_providers else None
        payload = self._payload(
            "pv",
            call_options(contexts, subject, event_id, timestamp, true_timestamp),
            provided,
            {
                "url": _text("page_url", page_url, required=True),
                "page": _text("page_title", page_title),
                "refr": _text("referrer", referrer),
            },
        )
        await self._store(payload)
        return payload.eid

    async def track_struct_event(
        self,
        category: str,
        action: str,
        label: str | None = None,
        property_: str | None = None,
        value: float | None = None,
        *,
        contexts: Sequence[SelfDescribingJson] | None = None,
        subject: Subject | None = None,
        event_id: str | None = None,
        timestamp: Timestamp | None = None,
        true_timestamp: Timestamp | None = None,
    ) -> str:
        """Track a structured event (``e=se``); category and action are required."""
        provided = await self._provide() if self._context_providers else None
        payload = self._payload(
            "se",
            call_options(contexts, subject, event_id, timestamp, true_timestamp),
            provided,
            {
                "se_ca": _text("category", category, required=True),
                "se_ac": _text("action", action, required=True),
                "se_la": _text("label", label),
                "se_pr": _text("property_", property_),
                "se_va": None if value is None else format_number(value, name="value"),
            },
        )
        await self._store(payload)
        return payload.eid

    async def track_self_describing_event(
        self,
        event_json: SelfDescribingJson,
        *,
        contexts: Sequence[SelfDescribingJson] | None = None,
        subject: Subject | None = None,
        event_id: str | None = None,
        timestamp: Timestamp | None = None,
        true_timestamp: Timestamp | None = None,
    ) -> str:
        """Track a self-describing (unstructured) event (``e=ue``)."""
        provided = await self._provide() if self._context_providers else None
        payload = self._self_describing(
            event_json,
            call_options(contexts, subject, event_id, timestamp, true_timestamp),
            provided,
        )
        await self._store(payload)
        return payload.eid

    async def track_screen_view(
        self,
        name: str | None = None,
        id: str | None = None,
        *,
        contexts: Sequence[SelfDescribingJson] | None = None,
        subject: Subject | None = None,
        event_id: str | None = None,
        timestamp: Timestamp | None = None,
        true_timestamp: Timestamp | None = None,
    ) -> str:
        """Track a screen view (screen_view 1-0-0); give a name, an id, or both."""
        data = {"name": _text("name", name), "id": _text("id", id)}
        if not any(data.values()):
            raise InvalidEventError("track_screen_view needs a name or an id")
        provided = await self._provide() if self._context_providers else None
        payload = self._unstruct(
            SCREEN_VIEW_SCHEMA,
            {k: v for k, v in data.items() if v},
            call_options(contexts, subject, event_id, timestamp, true_timestamp),
            provided,
        )
        await self._store(payload)
        return payload.eid

    async def track_timing(
        self,
        category: str,
        variable: str,
        timing: int,
        label: str | None = None,
        *,
        contexts: Sequence[SelfDescribingJson] | None = None,
        subject: Subject | None = None,
        event_id: str | None = None,
        timestamp: Timestamp | None = None,
        true_timestamp: Timestamp | None = None,
    ) -> str:
        """Track a user timing (timing 1-0-0); ``timing`` is an int, in milliseconds."""
        if isinstance(timing, bool) or not isinstance(timing, int):
            raise InvalidEventError(f"timing must be an int (ms), got {type(timing).__name__}")
        finite_number("timing", timing)
        data: dict[str, str | int] = {
            "category": _text("category", category, required=True) or "",
            "variable": _text("variable", variable, required=True) or "",
            "timing": timing,
        }
        if _text("label", label):
            data["label"] = label or ""
        provided = await self._provide() if self._context_providers else None
        payload = self._unstruct(
            TIMING_SCHEMA,
            data,
            call_options(contexts, subject, event_id, timestamp, true_timestamp),
            provided,
        )
        await self._store(payload)
        return payload.eid

    async def track_ecommerce_transaction(
        self,
        order_id: str,
        total_value: float,
        *,
        affiliation: str | None = None,
        tax_value: float | None = None,
        shipping: float | None = None,
        city: str | None = None,
        state: str | None = None,
        country: str | None = None,
        currency: str | None = None,
        items: Sequence[EcommerceItem] = (),
        contexts: Sequence[SelfDescribingJson] | None = None,
        subject: Subject | None = None,
        event_id: str | None = None,
        timestamp: Timestamp | None = None,
        true_timestamp: Timestamp | None = None,
    ) -> str:
        """Track a transaction (``e=tr``) and one ``e=ti`` event per item.

        Everything is checked before anything is stored, and the transaction and its
        items are stored together: one bad item means nothing is stored at all.
        Returns the transaction's event id.
        """
        items = checked_items(items)
        order = _text("order_id", order_id, required=True)
        cur = _text("currency", currency)
        provided = await self._provide() if self._context_providers else None
        options = call_options(contexts, subject, event_id, timestamp, true_timestamp)
        transaction = self._payload(
            "tr",
            options,
            provided,
            {
                "tr_id": order,
                "tr_tt": format_money(total_value, name="total_value"),
                "tr_af": _text("affiliation", affiliation),
                "tr_tx": None if tax_value is None else format_money(tax_value, name="tax_value"),
                "tr_sh": None if shipping is None else format_money(shipping, name="shipping"),
                "tr_ci": _text("city", city),
                "tr_st": _text("state", state),
                "tr_co": _text("country", country),
                "tr_cu": cur,
            },
        )
        payloads = [transaction]
        for item in items:
            ti_options = replace(options, event_id=item.event_id)
            payloads.append(
                self._payload("ti", ti_options, provided, item_fields(order, item, cur))
            )
        await self._store_together(payloads)
        return transaction.eid
