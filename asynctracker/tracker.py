"""The Tracker: turns ``track_*`` calls into protocol payloads and hands them to an Emitter.

Every argument is checked before anything is stored, so a bad call raises
InvalidEventError at the call site and leaves the queue untouched. Each ``track_*``
returns the new event's id once the event is in storage; delivery happens in the
background and its problems are never raised here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

from . import _contexts
from ._build import EventBuilder, Timestamp, checked_event_id
from ._checks import INT32_MIN, finite_number, flush_timeout, int32, setting_text
from ._checks import text as _text
from ._contexts import ContextProvider
from .emitter import Emitter
from .exceptions import ConfigurationError, InvalidEventError
from .payload import (
    SCREEN_VIEW_SCHEMA,
    TIMING_SCHEMA,
    SelfDescribingJson,
    format_money,
    format_number,
)
from .subject import Subject

__all__ = ["EcommerceItem", "Platform", "Timestamp", "Tracker"]

Platform: TypeAlias = Literal["web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"]
_PLATFORMS = frozenset({"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"})
_TRACKER_FIELDS = frozenset({"namespace", "app_id", "platform"})

_TrackerT = TypeVar("_TrackerT", bound="Tracker")


@dataclass(frozen=True, slots=True)
class EcommerceItem:
    """One line of an ecommerce transaction (sent as its own ``e=ti`` event).

    ``sku``, ``price`` and ``quantity`` are required; they are checked here so that
    a bad item fails where it is written.
    """

    sku: str
    price: float
    quantity: int = 1
    name: str | None = None
    category: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        _text("EcommerceItem.sku", self.sku, required=True)
        format_number(self.price, name="EcommerceItem.price")
        # Enrich stores ti_quantity as a 32-bit int; returns may be negative.
        int32("EcommerceItem.quantity", self.quantity, minimum=INT32_MIN, error=InvalidEventError)
        _text("EcommerceItem.name", self.name)
        _text("EcommerceItem.category", self.category)
        if self.event_id is not None:
            checked_event_id(self.event_id)


class Tracker(EventBuilder):
    """Builds events and passes them to its emitter.

    Args:
        emitter: where events go. Several trackers may share one emitter.
        namespace: ``tna``, tells this tracker's events apart from other trackers'.
        app_id: ``aid``, the application the events belong to.
        platform: ``p``, one of the protocol's platform codes (default ``"srv"``).
        base64_encode: send self-describing JSON and contexts base64url-encoded
            (``ue_px``/``cx``, default) or as raw JSON (``ue_pr``/``co``).
        subject: default Subject for every event. A ``track_*`` call's ``subject``
            replaces it for that event, and so does the Subject bound to the current
            request with :func:`asynctracker.bind_subject` (precedence: the call's
            ``subject=``, then the bound one, then this one).
        contexts: entities (SelfDescribingJson) added to every event, after the call's
            own contexts.
        context_providers: callables, sync or async, taking no arguments, asked once
            per ``track_*`` call for entities to add after the static ``contexts``: a
            SelfDescribingJson, a list of them, or None. They run on the event loop,
            so keep them quick; one that raises or returns anything else makes the
            call raise ContextProviderError and store nothing.

    ``async with tracker:`` opens the emitter and, on the way out, flushes (bounded by
    the emitter's ``close_timeout``) and closes it.
    """

    def __init__(
        self,
        emitter: Emitter,
        *,
        namespace: str | None = None,
        app_id: str | None = None,
        platform: Platform = "srv",
        base64_encode: bool = True,
        subject: Subject | None = None,
        contexts: Sequence[SelfDescribingJson] | None = None,
        context_providers: Sequence[ContextProvider] | None = None,
    ) -> None:
        if not isinstance(emitter, Emitter):
            raise ConfigurationError("emitter must be an asynctracker.Emitter")
        if subject is not None and not isinstance(subject, Subject):
            raise ConfigurationError("subject must be an asynctracker.Subject")
        self.emitter = emitter
        # Checked by __setattr__, here and whenever they are changed later.
        self.platform: Platform = platform
        self.namespace = namespace
        self.app_id = app_id
        self.base64_encode = bool(base64_encode)
        self.subject = subject
        self._static_json = _contexts.static_json(contexts)
        self._static_members = {}
        self._context_providers = _contexts.providers(context_providers)

    def __setattr__(self, name: str, value: object) -> None:
        if name in _TRACKER_FIELDS:
            if name == "platform":
                if value not in _PLATFORMS:
                    raise ConfigurationError(
                        f"platform must be one of {sorted(_PLATFORMS)}, got {value!r}"
                    )
            elif value is not None:
                setting_text(name, value)
            # The JSON of these three is written into every event: made again on next use.
            object.__setattr__(self, "_tracker_json", None)
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<Tracker namespace={self.namespace!r} app_id={self.app_id!r} {self.emitter!r}>"

    def set_subject(self, subject: Subject | None) -> Tracker:
        """Replace the default Subject (None: no subject fields)."""
        if subject is not None and not isinstance(subject, Subject):
            raise ConfigurationError("subject must be an asynctracker.Subject")
        self.subject = subject
        return self

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self: _TrackerT) -> _TrackerT:
        await self.emitter.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.emitter.__aexit__(*exc_info)

    async def flush(self, timeout: float | None = None) -> int:
        """Wait for delivery; return the number of events still stored (Emitter.flush).

        ``timeout`` is in seconds; None or infinity wait without limit. NaN and negative
        values raise ConfigurationError (a ValueError).
        """
        return await self.emitter.flush(flush_timeout(timeout))

    async def aclose(self) -> None:
        """Close the emitter (without flushing). Idempotent."""
        await self.emitter.aclose()

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
            (contexts, subject, event_id, timestamp, true_timestamp, provided),
            {
                "url": _text("page_url", page_url, required=True),
                "page": _text("page_title", page_title),
                "refr": _text("referrer", referrer),
            },
        )
        await self.emitter.add(payload)
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
            (contexts, subject, event_id, timestamp, true_timestamp, provided),
            {
                "se_ca": _text("category", category, required=True),
                "se_ac": _text("action", action, required=True),
                "se_la": _text("label", label),
                "se_pr": _text("property_", property_),
                "se_va": None if value is None else format_number(value, name="value"),
            },
        )
        await self.emitter.add(payload)
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
            (contexts, subject, event_id, timestamp, true_timestamp, provided),
        )
        await self.emitter.add(payload)
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
            (contexts, subject, event_id, timestamp, true_timestamp, provided),
        )
        await self.emitter.add(payload)
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
            TIMING_SCHEMA, data, (contexts, subject, event_id, timestamp, true_timestamp, provided)
        )
        await self.emitter.add(payload)
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
        # Materialise first: checking a generator with all() would consume it and
        # silently store the transaction without its items.
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise InvalidEventError("items must be a list of EcommerceItem")
        items = tuple(items)
        if not all(isinstance(item, EcommerceItem) for item in items):
            raise InvalidEventError("items must be a list of EcommerceItem")
        order = _text("order_id", order_id, required=True)
        cur = _text("currency", currency)
        provided = await self._provide() if self._context_providers else None
        common = (contexts, subject, event_id, timestamp, true_timestamp, provided)
        transaction = self._payload(
            "tr",
            common,
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
            payloads.append(
                self._payload(
                    "ti",
                    (*common[:2], item.event_id, *common[3:]),
                    {
                        "ti_id": order,
                        "ti_sk": item.sku,
                        "ti_nm": item.name,
                        "ti_ca": item.category,
                        "ti_pr": format_money(item.price, name="EcommerceItem.price"),
                        "ti_qu": str(item.quantity),
                        "ti_cu": cur,
                    },
                )
            )
        await self.emitter.add_many(payloads)
        return transaction.eid
