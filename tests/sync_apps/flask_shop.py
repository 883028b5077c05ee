"""The Flask shop that tests/test_sync_frameworks.py serves with gunicorn.

``SHOP_TRACKER_AT_IMPORT=1`` makes the tracker when the module is imported, and tracks
one "boot" event with it: under ``gunicorn --preload`` that is in the master, before
it forks the workers. Otherwise each worker makes its own on its first request.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from flask import Flask

from asynctracker import sync
from asynctracker.integrations.flask import Tracking, get_tracker


def make_tracker() -> sync.Tracker:
    emitter = sync.Emitter(
        os.environ["ASYNCTRACKER_COLLECTOR_URL"], db_name=os.environ["ASYNCTRACKER_DB_PATH"]
    )
    return sync.Tracker(emitter, app_id="flask-shop")


source: sync.Tracker | Callable[[], sync.Tracker] = make_tracker
if os.environ.get("SHOP_TRACKER_AT_IMPORT"):
    tracker = make_tracker()
    tracker.track_struct_event("shop", "boot")
    source = tracker

app = Flask(__name__)
Tracking(app, source, trusted_proxies=["127.0.0.1"], track_page_views=True)


@app.get("/health")
def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/page/<int:n>")
def page(n: int) -> dict[str, int]:
    return {"pid": os.getpid()}


@app.post("/buy/<sku>")
def buy(sku: str) -> dict[str, object]:
    return {"event_id": get_tracker().track_struct_event("shop", "buy", label=sku)}
