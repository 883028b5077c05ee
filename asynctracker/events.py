"""Event objects for ``await tracker.track(event)``: snowplow-tracker 1.x's Event API.

The five classes of snowplow-tracker 1.x keep its names, arguments and wire output, so
code written for it moves here by changing its imports (and awaiting ``track``):

* :class:`PageView` (``e=pv``), :class:`PagePing` (``e=pp``) and
  :class:`StructuredEvent` (``e=se``);
* :class:`ScreenView`: the mobile ``screen_view`` event
  (``iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0``);
* :class:`SelfDescribing`: any event described by an Iglu schema.

Beside them, the standard events the JavaScript and Node trackers build, with the
schemas they send: :class:`LinkClick`, :class:`AddToCart`, :class:`RemoveFromCart`,
:class:`FormChange`, :class:`FormSubmit` (with :class:`FormElement`),
:class:`SiteSearch`, :class:`ConsentGranted`, :class:`ConsentWithdrawn`, and
:class:`ApplicationError` (the mobile trackers' exception event).

Every event also takes ``event_subject``, ``context`` and ``true_timestamp`` (see
:class:`Event`). Arguments are checked when the event is made: a mistake raises
InvalidEventError there. Zero is a value: ``PagePing(min_x=0)`` sends ``pp_mix=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._checks import INT32_MIN
from ._consent_events import ApplicationError, ConsentGranted, ConsentWithdrawn
from ._event import Event, TrueTimestamp, count, optional_text, required_text, uuid_text
from ._standard_events import (
    AddToCart,
    FormChange,
    FormElement,
    FormSubmit,
    LinkClick,
    RemoveFromCart,
    SiteSearch,
)
from .exceptions import InvalidEventError
from .payload import SelfDescribingJson, format_number
from .subject import Subject

__all__ = [
    "AddToCart",
    "ApplicationError",
    "ConsentGranted",
    "ConsentWithdrawn",
    "Event",
    "FormChange",
    "FormElement",
    "FormSubmit",
    "LinkClick",
    "MOBILE_SCREEN_VIEW_SCHEMA",
    "PagePing",
    "PageView",
    "RemoveFromCart",
    "ScreenView",
    "SelfDescribing",
    "SiteSearch",
    "StructuredEvent",
    "TrueTimestamp",
]

MOBILE_SCREEN_VIEW_SCHEMA = "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0"


@dataclass(frozen=True, slots=True)
class PageView(Event):
    """A page view (``e=pv``): ``page_url`` is required."""

    page_url: str
    page_title: str | None = None
    referrer: str | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    def __post_init__(self) -> None:
        self._finish(
            "pv",
            {
                "url": required_text("page_url", self.page_url),
                "page": optional_text("page_title", self.page_title),
                "refr": optional_text("referrer", self.referrer),
            },
        )


def _offset(name: str, value: object) -> str | None:
    checked = count(name, value, minimum=INT32_MIN)
    return None if checked is None else str(checked)


@dataclass(frozen=True, slots=True)
class PagePing(Event):
    """A page ping (``e=pp``): the page is still open; the offsets (ints, pixels) are the
    smallest and largest scroll positions seen since the last ping."""

    page_url: str
    page_title: str | None = None
    referrer: str | None = None
    min_x: int | None = None
    max_x: int | None = None
    min_y: int | None = None
    max_y: int | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    def __post_init__(self) -> None:
        self._finish(
            "pp",
            {
                "url": required_text("page_url", self.page_url),
                "page": optional_text("page_title", self.page_title),
                "refr": optional_text("referrer", self.referrer),
                "pp_mix": _offset("min_x", self.min_x),
                "pp_max": _offset("max_x", self.max_x),
                "pp_miy": _offset("min_y", self.min_y),
                "pp_may": _offset("max_y", self.max_y),
            },
        )


@dataclass(frozen=True, slots=True)
class ScreenView(Event):
    """A mobile screen view (``MOBILE_SCREEN_VIEW_SCHEMA``), as snowplow-tracker 1.x sends it.

    ``id_`` (a UUID, as the schema requires) and ``name`` are required; the others are
    optional: the screen's ``type``, the previous screen's name, id (a UUID) and type,
    and the ``transition_type`` that led here. (``Tracker.track_screen_view`` sends the
    older web ``screen_view`` schema.)
    """

    id_: str
    name: str
    type: str | None = None
    previous_name: str | None = None
    previous_id: str | None = None
    previous_type: str | None = None
    transition_type: str | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    def __post_init__(self) -> None:
        data = {
            "id": uuid_text("id_", self.id_, required=True),
            "name": required_text("name", self.name),
            "type": optional_text("type", self.type),
            "previousName": optional_text("previous_name", self.previous_name),
            "previousId": uuid_text("previous_id", self.previous_id),
            "previousType": optional_text("previous_type", self.previous_type),
            "transitionType": optional_text("transition_type", self.transition_type),
        }
        sent = {key: value for key, value in data.items() if value is not None}
        self._finish("ue", self_describing=SelfDescribingJson(MOBILE_SCREEN_VIEW_SCHEMA, sent))


@dataclass(frozen=True, slots=True)
class StructuredEvent(Event):
    """A structured event (``e=se``): ``category`` and ``action`` are required; ``value``
    is a finite number (0 is sent)."""

    category: str
    action: str
    label: str | None = None
    property_: str | None = None
    value: float | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    def __post_init__(self) -> None:
        self._finish(
            "se",
            {
                "se_ca": required_text("category", self.category),
                "se_ac": required_text("action", self.action),
                "se_la": optional_text("label", self.label),
                "se_pr": optional_text("property_", self.property_),
                "se_va": None if self.value is None else format_number(self.value, name="value"),
            },
        )


@dataclass(frozen=True, slots=True)
class SelfDescribing(Event):
    """A self-describing event (``e=ue``): ``event_json`` holds its schema and data.

    The data is encoded when the event is tracked, with the tracker's ``json_encoder``;
    data that cannot be encoded makes that call raise InvalidEventError.
    """

    event_json: SelfDescribingJson
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.event_json, SelfDescribingJson):
            raise InvalidEventError(
                f"event_json must be a SelfDescribingJson, got {type(self.event_json).__name__}"
            )
        self._finish("ue", self_describing=self.event_json)
