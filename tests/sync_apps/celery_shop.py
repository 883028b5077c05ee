"""The Celery app that tests/test_sync_frameworks.py runs a prefork worker of.

Its broker and result backend are folders (celery_config.py), so no server runs.
"""

from __future__ import annotations

import os
import time

from celery_config import make_app

from asynctracker import sync
from asynctracker.integrations.celery import get_tracker, setup_tracking


def make_tracker() -> sync.Tracker:
    emitter = sync.Emitter(
        os.environ["ASYNCTRACKER_COLLECTOR_URL"], db_name=os.environ["ASYNCTRACKER_DB_PATH"]
    )
    return sync.Tracker(emitter, app_id="celery-shop")


app = make_app(os.environ["SHOP_CELERY_DIR"])
setup_tracking(make_tracker)


@app.task(name="shop.buy")
def buy(n: int) -> dict[str, object]:
    time.sleep(0.01)  # long enough that both pool processes take tasks
    event_id = get_tracker().track_struct_event("shop", "buy", label=str(n))
    return {"event_id": event_id, "pid": os.getpid()}
