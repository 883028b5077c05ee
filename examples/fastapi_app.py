"""A FastAPI shop that tracks what its users do, delivered durably through SQLite.

Install with the ``fastapi`` extra, run a local collector, then the app::

    python -m pip install ".[fastapi]"  # from a clone: see the README, "Installation"
    asynctracker collector            # or any Snowplow collector
    python examples/fastapi_app.py    # http://127.0.0.1:8000

Page views are tracked for GET pages only (the middleware's default filters); the cart
and checkout are explicit events.

Settings come from the environment:

- ``ASYNCTRACKER_COLLECTOR_URL``: where events go (default ``http://127.0.0.1:9090``).
- ``ASYNCTRACKER_DB_PATH``: the SQLite queue (default ``asynctracker-fastapi.db``); events
  not delivered when the app stops are sent by the next start.
- ``ASYNCTRACKER_TRUSTED_PROXIES``: comma-separated addresses/networks of your load
  balancers, whose ``X-Forwarded-For`` is believed (default: none).
- ``HOST`` / ``PORT``: where the app listens (default ``127.0.0.1:8000``).
"""

from __future__ import annotations

import os
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI

import asynctracker as at
from asynctracker.integrations.fastapi import (
    TrackingMiddleware,
    get_subject,
    get_tracker,
    tracker_lifespan,
)

DEFAULT_COLLECTOR_URL = "http://127.0.0.1:9090"
DEFAULT_DB_PATH = "asynctracker-fastapi.db"
CART_SCHEMA = "iglu:com.acme/add_to_cart/jsonschema/1-0-0"


def create_app(
    collector_url: str | None = None,
    db_path: str | None = None,
    trusted_proxies: list[str] | None = None,
) -> FastAPI:
    """Build the app; arguments left out are read from the environment."""
    url = collector_url or os.environ.get("ASYNCTRACKER_COLLECTOR_URL", DEFAULT_COLLECTOR_URL)
    db = db_path or os.environ.get("ASYNCTRACKER_DB_PATH", DEFAULT_DB_PATH)
    if trusted_proxies is None:
        raw = os.environ.get("ASYNCTRACKER_TRUSTED_PROXIES", "")
        trusted_proxies = [proxy.strip() for proxy in raw.split(",") if proxy.strip()]

    def make_tracker() -> at.Tracker:
        # A fresh tracker per app start: a closed one cannot be reopened.
        return at.Tracker(at.Emitter(url, db_name=db), namespace="shop", app_id="fastapi-example")

    app = FastAPI(title="asynctracker FastAPI example", lifespan=tracker_lifespan(make_tracker))
    app.add_middleware(TrackingMiddleware, trusted_proxies=trusted_proxies, track_page_views=True)

    @app.get("/")
    async def home() -> dict[str, str]:
        """The page view is tracked by the middleware."""
        return {"hello": "shop"}

    @app.post("/cart/{sku}")
    async def add_to_cart(
        sku: str,
        tracker: Annotated[at.Tracker, Depends(get_tracker)],
        subject: Annotated[at.Subject, Depends(get_subject)],
        quantity: int = 1,
    ) -> dict[str, str]:
        """An explicit self-describing event, attributed to the request's user."""
        event_id = await tracker.track_self_describing_event(
            at.SelfDescribingJson(CART_SCHEMA, {"sku": sku, "quantity": quantity}),
            subject=subject,
        )
        return {"event_id": event_id}

    @app.post("/checkout/{order_id}")
    async def checkout(
        order_id: str,
        tracker: Annotated[at.Tracker, Depends(get_tracker)],
        subject: Annotated[at.Subject, Depends(get_subject)],
    ) -> dict[str, str]:
        """A transaction with its items; stored together, or not at all."""
        event_id = await tracker.track_ecommerce_transaction(
            order_id=order_id,
            total_value=19.0,
            currency="EUR",
            items=[at.EcommerceItem(sku="mug", price=9.5, quantity=2, name="Mug")],
            subject=subject,
        )
        return {"event_id": event_id}

    return app


app = create_app()

if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        # TrackingMiddleware decides which X-Forwarded-For to believe (trusted_proxies);
        # uvicorn's own proxy handling would rewrite the peer address before it looks.
        proxy_headers=False,
    )
