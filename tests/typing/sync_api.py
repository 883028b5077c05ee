"""The sync API as users write it: mypy --strict checks this file (pyproject's files)."""

from __future__ import annotations

import asynctracker as at
from asynctracker import sync


def track_signup(tracker: sync.Tracker, name: str) -> str:
    return tracker.track_self_describing_event(
        at.SelfDescribingJson("iglu:com.acme/signup/jsonschema/1-0-0", {"name": name}),
        contexts=[at.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"id": 1})],
    )


def main() -> None:
    emitter = sync.Emitter("https://collector.example", request_type="POST", max_events=1000)
    with sync.Tracker([emitter], app_id="shop", namespace="web") as tracker:
        event_id: str = tracker.track_struct_event("shop", "add", value=2.5)
        tracker.track(at.PageView(page_url="https://shop.example/"))
        track_signup(tracker, event_id)
        left: int = tracker.flush(timeout=5)
        print(left, emitter.stats().sent)
