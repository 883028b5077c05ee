"""Ecommerce transactions: the items of ``Tracker.track_ecommerce_transaction``.

A transaction is sent as one ``e=tr`` event and one ``e=ti`` event per item, stored
together. Items are checked when they are made, so a bad item fails where it is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._build import checked_event_id
from ._checks import INT32_MIN, int32
from ._checks import text as _text
from .exceptions import InvalidEventError
from .payload import format_money, format_number

__all__ = ["EcommerceItem", "checked_items", "item_fields"]


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


def checked_items(items: object) -> tuple[EcommerceItem, ...]:
    """The ``items`` argument as a tuple: InvalidEventError unless all are EcommerceItem.

    Materialised first: checking a generator with all() would consume it and silently
    store the transaction without its items.
    """
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise InvalidEventError("items must be a list of EcommerceItem")
    checked = tuple(items)
    if not all(isinstance(item, EcommerceItem) for item in checked):
        raise InvalidEventError("items must be a list of EcommerceItem")
    return checked


def item_fields(
    order: str | None, item: EcommerceItem, currency: str | None
) -> dict[str, str | None]:
    """The ``e=ti`` fields of one item of order ``order``."""
    return {
        "ti_id": order,
        "ti_sk": item.sku,
        "ti_nm": item.name,
        "ti_ca": item.category,
        "ti_pr": format_money(item.price, name="EcommerceItem.price"),
        "ti_qu": str(item.quantity),
        "ti_cu": currency,
    }
