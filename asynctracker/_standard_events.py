"""The standard web events of the JavaScript and Node trackers, as event objects.

Each builds the self-describing event the trackers' ``build*`` functions build
(``@snowplow/tracker-core``): the same schema and version, the same camelCase keys,
optional values left out when None. Arguments are checked against the schema's limits
(types, enums, lengths) when the event is made, so every event validates against Iglu
Central. Consent and error events are in ``_consent_events``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ._checks import finite_number
from ._event import (
    Event,
    TrueTimestamp,
    bounded,
    count,
    optional_text,
    required_text,
    strings,
)
from .exceptions import InvalidEventError
from .payload import JSONValue, SelfDescribingJson
from .subject import Subject

__all__ = [
    "AddToCart",
    "FormChange",
    "FormElement",
    "FormSubmit",
    "LinkClick",
    "RemoveFromCart",
    "SiteSearch",
]

_SNOWPLOW = "iglu:com.snowplowanalytics.snowplow"
#: The node names and input types the form schemas allow (change_form, submit_form 1-0-0).
NODE_NAMES = ("INPUT", "TEXTAREA", "SELECT")
FORM_TYPES = (
    "button", "checkbox", "color", "date", "datetime", "datetime-local", "email", "file",
    "hidden", "image", "month", "number", "password", "radio", "range", "reset", "search",
    "submit", "tel", "text", "time", "url", "week",
)  # fmt: skip
#: The form schemas' length limits: ids and classes, and names and values.
_ID_LENGTH = 4096
_VALUE_LENGTH = 65535


def _present(data: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    """The data without the values not given (None)."""
    return {key: value for key, value in data.items() if value is not None}


def _choice(name: str, value: object, allowed: Sequence[str], *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise InvalidEventError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _classes(name: str, value: object) -> list[str] | None:
    checked = strings(name, value)
    for index, item in enumerate(checked or ()):
        bounded(f"{name}[{index}]", item, _ID_LENGTH, empty=True)
    return checked


@dataclass(frozen=True, slots=True)
class LinkClick(Event):
    """A click on a link (``link_click`` 1-0-1): ``target_url`` is required."""

    target_url: str
    element_id: str | None = None
    element_classes: Sequence[str] | None = None
    element_target: str | None = None
    element_content: str | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/link_click/jsonschema/1-0-1"

    def __post_init__(self) -> None:
        data = {
            "targetUrl": required_text("target_url", self.target_url),
            "elementId": optional_text("element_id", self.element_id),
            "elementClasses": strings("element_classes", self.element_classes),
            "elementTarget": optional_text("element_target", self.element_target),
            "elementContent": optional_text("element_content", self.element_content),
        }
        self._finish("ue", self_describing=SelfDescribingJson(self.SCHEMA, _present(data)))


@dataclass(frozen=True, slots=True)
class _CartChange(Event):
    """An item added to or removed from a cart: ``sku`` and ``quantity`` are required."""

    sku: str
    quantity: float
    name: str | None = None
    category: str | None = None
    unit_price: float | None = None
    currency: str | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str]

    def __post_init__(self) -> None:
        finite_number("quantity", self.quantity)
        if self.unit_price is not None:
            finite_number("unit_price", self.unit_price)
        data: dict[str, JSONValue] = {
            "sku": required_text("sku", self.sku),
            "quantity": self.quantity,
            "name": optional_text("name", self.name),
            "category": optional_text("category", self.category),
            "unitPrice": self.unit_price,
            "currency": optional_text("currency", self.currency),
        }
        self._finish("ue", self_describing=SelfDescribingJson(self.SCHEMA, _present(data)))


@dataclass(frozen=True, slots=True)
class AddToCart(_CartChange):
    """An item added to a cart (``add_to_cart`` 1-0-0): ``sku`` and ``quantity`` required."""

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/add_to_cart/jsonschema/1-0-0"


@dataclass(frozen=True, slots=True)
class RemoveFromCart(_CartChange):
    """An item removed from a cart (``remove_from_cart`` 1-0-0): ``sku`` and ``quantity``
    required."""

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/remove_from_cart/jsonschema/1-0-0"


@dataclass(frozen=True, slots=True)
class FormChange(Event):
    """A form field's value changed (``change_form`` 1-0-0).

    ``form_id`` and ``element_id`` are strs (``""`` for an element without one),
    ``node_name`` is ``"INPUT"``, ``"TEXTAREA"`` or ``"SELECT"``, ``value`` is the new
    value (None is sent as null); ``type_`` is the input's type (``"text"``,
    ``"checkbox"``, ...).
    """

    form_id: str
    element_id: str
    node_name: str
    value: str | None
    type_: str | None = None
    element_classes: Sequence[str] | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/change_form/jsonschema/1-0-0"

    def __post_init__(self) -> None:
        data = {
            "formId": bounded("form_id", self.form_id, _ID_LENGTH, empty=True),
            "elementId": bounded("element_id", self.element_id, _ID_LENGTH, empty=True),
            "nodeName": _choice("node_name", self.node_name, NODE_NAMES, optional=False),
            "value": None,
            "type": _choice("type_", self.type_, FORM_TYPES, optional=True),
            "elementClasses": _classes("element_classes", self.element_classes),
        }
        sent = _present(data)
        # Required, and may be null.
        sent["value"] = bounded("value", self.value, _VALUE_LENGTH, empty=True, null=True)
        self._finish("ue", self_describing=SelfDescribingJson(self.SCHEMA, sent))


@dataclass(frozen=True, slots=True)
class FormElement:
    """One element of a submitted form: its ``name``, ``value`` (None is sent as null),
    ``node_name`` (``"INPUT"``, ``"TEXTAREA"`` or ``"SELECT"``) and input ``type_``."""

    name: str
    value: str | None
    node_name: str
    type_: str | None = None

    def __post_init__(self) -> None:
        bounded("FormElement.name", self.name, _VALUE_LENGTH, empty=True)
        bounded("FormElement.value", self.value, _VALUE_LENGTH, empty=True, null=True)
        _choice("FormElement.node_name", self.node_name, NODE_NAMES, optional=False)
        _choice("FormElement.type_", self.type_, FORM_TYPES, optional=True)

    def to_dict(self) -> dict[str, JSONValue]:
        """The element as ``submit_form`` sends it."""
        element: dict[str, JSONValue] = {
            "name": self.name,
            "value": self.value,
            "nodeName": self.node_name,
        }
        if self.type_ is not None:
            element["type"] = self.type_
        return element


@dataclass(frozen=True, slots=True)
class FormSubmit(Event):
    """A form submitted (``submit_form`` 1-0-0): ``form_id`` (a str, may be ``""``), the
    form's classes and its elements (FormElement)."""

    form_id: str
    form_classes: Sequence[str] | None = None
    elements: Sequence[FormElement] | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/submit_form/jsonschema/1-0-0"

    def __post_init__(self) -> None:
        elements = self.elements
        if elements is not None:
            if isinstance(elements, (str, bytes, Mapping)) or not isinstance(elements, Sequence):
                raise InvalidEventError("elements must be a list of FormElement")
            for index, element in enumerate(elements):
                if not isinstance(element, FormElement):
                    raise InvalidEventError(
                        f"elements[{index}] must be a FormElement, got {type(element).__name__}"
                    )
        data: dict[str, JSONValue] = {
            "formId": bounded("form_id", self.form_id, _ID_LENGTH, empty=True),
            "formClasses": _classes("form_classes", self.form_classes),
            # As the trackers do: no elements, no key.
            "elements": [element.to_dict() for element in elements] if elements else None,
        }
        self._finish("ue", self_describing=SelfDescribingJson(self.SCHEMA, _present(data)))


@dataclass(frozen=True, slots=True)
class SiteSearch(Event):
    """A search on the site (``site_search`` 1-0-0): the search ``terms`` (at least one),
    the ``filters`` applied (str to str or bool), and the numbers of results in all and
    on the page."""

    terms: Sequence[str]
    filters: Mapping[str, str | bool] | None = None
    total_results: int | None = None
    page_results: int | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/site_search/jsonschema/1-0-0"

    def __post_init__(self) -> None:
        filters = self.filters
        if filters is not None:
            if not isinstance(filters, Mapping):
                raise InvalidEventError(f"filters must be a dict, got {type(filters).__name__}")
            for key, value in filters.items():
                required_text("filters key", key)
                if not isinstance(value, bool):
                    bounded(f"filters[{key!r}]", value, None, empty=True)
        data: dict[str, JSONValue] = {
            "terms": strings("terms", self.terms, required=True),
            "filters": None if filters is None else dict(filters),
            "totalResults": count("total_results", self.total_results),
            "pageResults": count("page_results", self.page_results),
        }
        self._finish("ue", self_describing=SelfDescribingJson(self.SCHEMA, _present(data)))
