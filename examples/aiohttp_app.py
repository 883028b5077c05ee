"""An aiohttp.web shop that tracks what its users do, delivered durably through SQLite.

Install with the ``aiohttp`` extra, run a local collector, then the app::

    python -m pip install ".[aiohttp]"  # from a clone: see the README, "Installation"
    asynctracker collector            # or any Snowplow collector
    python examples/aiohttp_app.py    # http://127.0.0.1:8080

Page views are tracked for GET pages only (the middleware's default filters); the cart
and checkout are explicit events.

Settings come from the environment:

- ``ASYNCTRACKER_COLLECTOR_URL``: where events go (default ``http://127.0.0.1:9090``).
- ``ASYNCTRACKER_DB_PATH``: the SQLite queue (default ``asynctracker-aiohttp.db``); events
  not delivered when the app stops are sent by the next start.
- ``ASYNCTRACKER_TRUSTED_PROXIES``: comma-separated addresses/networks of your load
  balancers, whose ``X-Forwarded-For`` is believed (default: none).
- ``HOST`` / ``PORT``: where the app listens (default ``127.0.0.1:8080``).
"""

from __future__ import annotations

import os

from aiohttp import web

import asynctracker as at
from asynctracker.integrations.aiohttp import get_subject, get_tracker, setup_tracking

DEFAULT_COLLECTOR_URL = "http://127.0.0.1:9090"
DEFAULT_DB_PATH = "asynctracker-aiohttp.db"
CART_SCHEMA = "iglu:com.acme/add_to_cart/jsonschema/1-0-0"


async def home(request: web.Request) -> web.Response:
    """The page view is tracked by the middleware."""
    return web.json_response({"hello": "shop"})


async def add_to_cart(request: web.Request) -> web.Response:
    """An explicit self-describing event, attributed to the request's user."""
    sku = request.match_info["sku"]
    quantity = int(request.query.get("quantity", "1"))
    event_id = await get_tracker(request).track_self_describing_event(
        at.SelfDescribingJson(CART_SCHEMA, {"sku": sku, "quantity": quantity}),
        subject=get_subject(request),
    )
    return web.json_response({"event_id": event_id})


async def checkout(request: web.Request) -> web.Response:
    """A transaction with its items; stored together, or not at all."""
    event_id = await get_tracker(request).track_ecommerce_transaction(
        order_id=request.match_info["order_id"],
        total_value=19.0,
        currency="EUR",
        items=[at.EcommerceItem(sku="mug", price=9.5, quantity=2, name="Mug")],
        subject=get_subject(request),
    )
    return web.json_response({"event_id": event_id})


def create_app(
    collector_url: str | None = None,
    db_path: str | None = None,
    trusted_proxies: list[str] | None = None,
) -> web.Application:
    """Build the app; arguments left out are read from the environment."""
    url = collector_url or os.environ.get("ASYNCTRACKER_COLLECTOR_URL", DEFAULT_COLLECTOR_URL)
    db = db_path or os.environ.get("ASYNCTRACKER_DB_PATH", DEFAULT_DB_PATH)
    if trusted_proxies is None:
        raw = os.environ.get("ASYNCTRACKER_TRUSTED_PROXIES", "")
        trusted_proxies = [proxy.strip() for proxy in raw.split(",") if proxy.strip()]

    def make_tracker() -> at.Tracker:
        # A fresh tracker per app start: a closed one cannot be reopened.
        return at.Tracker(at.Emitter(url, db_name=db), namespace="shop", app_id="aiohttp-example")

    app = web.Application()
    setup_tracking(app, make_tracker, trusted_proxies=trusted_proxies, track_page_views=True)
    app.router.add_get("/", home)
    app.router.add_post("/cart/{sku}", add_to_cart)
    app.router.add_post("/checkout/{order_id}", checkout)
    return app


if __name__ == "__main__":
    web.run_app(
        create_app(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
    )
