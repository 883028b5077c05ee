"""The Flask extension, request by request, through Flask's test client (real WSGI calls)
with a real collector on 127.0.0.1 and a real SQLite queue. Under gunicorn:
tests/test_sync_frameworks.py."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from examples_support import DUID, SID, sp_id_cookie
from flask import Flask, redirect
from flask.typing import ResponseReturnValue
from sync_support import ThreadedCollector, page_views

import asynctracker as at
from asynctracker import sync
from asynctracker.integrations.flask import (
    EXTENSION_KEY,
    AppTracking,
    Tracking,
    get_subject,
    get_tracker,
)


@pytest.fixture
def make_tracker(
    threaded_collector: ThreadedCollector, db_path: Path
) -> Iterator[Callable[[], sync.Tracker]]:
    """A tracker factory that counts its calls; every tracker it made is closed after."""
    made: list[sync.Tracker] = []

    def make() -> sync.Tracker:
        made.append(sync.Tracker(sync.Emitter(threaded_collector.url, db_name=db_path)))
        return made[-1]

    yield make
    for tracker in made:
        tracker.close()


def shop(tracker: sync.Tracker | Callable[[], sync.Tracker], **options: object) -> Flask:
    app = Flask("shop")
    Tracking(app, tracker, **options)  # type: ignore[arg-type]

    @app.get("/subject")
    def subject() -> ResponseReturnValue:
        bound = at.bound_subject()
        assert bound is get_subject()
        return bound.fields

    @app.post("/buy/<sku>")
    def buy(sku: str) -> ResponseReturnValue:
        return {"event_id": get_tracker().track_struct_event("shop", "buy", label=sku)}

    @app.get("/page/<name>")
    def page(name: str) -> ResponseReturnValue:
        return name

    @app.get("/old")
    def old() -> ResponseReturnValue:
        return redirect("/page/new")

    @app.get("/health")
    def health() -> ResponseReturnValue:
        return "ok"

    @app.get("/boom")
    def boom() -> ResponseReturnValue:
        raise RuntimeError("boom")

    return app


def test_the_requests_subject_is_bound_for_the_view_and_gone_after(
    make_tracker: Callable[[], sync.Tracker],
) -> None:
    app = shop(make_tracker, trusted_proxies=["10.0.0.0/8"])
    client = app.test_client()
    headers = {
        "User-Agent": "Mozilla/5.0 (test)",
        "Accept-Language": "de-CH,de;q=0.8",
        "X-Forwarded-For": "198.51.100.7, 10.0.0.2",
    }
    client.set_cookie("_sp_id.1fff", sp_id_cookie(4))
    fields = client.get("/subject", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert fields.json == {
        "ip": "198.51.100.7",  # the first hop no trusted proxy vouches for
        "ua": "Mozilla/5.0 (test)",
        "lang": "de-CH",
        "duid": DUID,
        "sid": SID,
        "vid": "4",
    }
    untrusted = client.get("/subject", headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert untrusted.json is not None
    assert untrusted.json["ip"] == "192.0.2.9"  # X-Forwarded-For from anyone is ignored
    assert at.bound_subject() is None  # this thread served both: nothing stays bound


def test_events_tracked_in_views_arrive_once_with_their_requests_subject(
    threaded_collector: ThreadedCollector, make_tracker: Callable[[], sync.Tracker]
) -> None:
    app = shop(make_tracker)

    def buy(n: int) -> str:
        answer = app.test_client().post(f"/buy/{n}", headers={"User-Agent": f"agent-{n}"})
        assert answer.json is not None
        event_id: str = answer.json["event_id"]
        return event_id

    with ThreadPoolExecutor(8) as pool:  # the threads of a threaded server
        eids = list(pool.map(buy, range(40)))
    with app.app_context():
        assert get_tracker().flush(timeout=10) == 0
    events = [event.payload for event in threaded_collector.collector.events]
    assert sorted(p["eid"] for p in events) == sorted(eids)
    assert all(p["ua"] == f"agent-{p['se_la']}" for p in events)  # never another request's


def test_a_tracker_function_runs_once_on_first_use_even_when_first_requests_race(
    db_path: Path, threaded_collector: ThreadedCollector
) -> None:
    calls: list[sync.Tracker] = []
    arrived = threading.Barrier(8)

    def make() -> sync.Tracker:
        calls.append(sync.Tracker(sync.Emitter(threaded_collector.url, db_name=db_path)))
        return calls[-1]

    app = shop(make)
    assert calls == []  # init_app made nothing: under gunicorn, this may be the master

    def first_request(n: int) -> int:
        arrived.wait(10)
        return app.test_client().post(f"/buy/{n}").status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(first_request, range(8))) == [200] * 8
    assert len(calls) == 1
    extension = app.extensions[EXTENSION_KEY]
    assert isinstance(extension, AppTracking)
    assert extension.get_tracker() is calls[0]
    calls[0].close()
    assert len(threaded_collector.collector.events) == 8


def test_page_views_follow_the_same_filters_as_the_async_middlewares(
    threaded_collector: ThreadedCollector, make_tracker: Callable[[], sync.Tracker]
) -> None:
    app = shop(make_tracker, track_page_views=True)
    client = app.test_client()
    assert client.get("/page/a", headers={"Referer": "https://ref.example/"}).status_code == 200
    assert client.get("/old").status_code == 302  # a redirect is a page a person asked for
    assert client.post("/buy/mug").status_code == 200  # an action, not a page
    assert client.get("/missing").status_code == 404
    assert client.get("/boom").status_code == 500
    assert client.get("/health").status_code == 200  # a probe, not a person
    with app.app_context():
        get_tracker().flush(timeout=10)
    assert page_views(threaded_collector.collector) == [
        ("http://localhost/old", None),
        ("http://localhost/page/a", "https://ref.example/"),
    ]


def test_page_view_options_narrow_what_is_tracked(
    threaded_collector: ThreadedCollector, make_tracker: Callable[[], sync.Tracker]
) -> None:
    app = shop(
        make_tracker,
        track_page_views=True,
        include_paths=["/page/"],
        exclude_paths=[re.compile(r"/page/private")],
    )
    client = app.test_client()
    for path in ("/page/a", "/page/private-1", "/subject", "/old"):
        client.get(path)
    with app.app_context():
        get_tracker().flush(timeout=10)
    assert [e.payload["url"] for e in threaded_collector.collector.events] == [
        "http://localhost/page/a"
    ]


def test_a_page_view_that_cannot_be_tracked_is_logged_and_the_response_still_sent(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = sync.Tracker(sync.Emitter("http://127.0.0.1:9", db_name=db_path))
    tracker.close()  # every track call now raises
    app = shop(tracker, track_page_views=True)
    with caplog.at_level(logging.ERROR, logger="asynctracker"):
        assert app.test_client().get("/page/a").status_code == 200
    assert "could not track the page view of /page/a" in caplog.text


def test_the_tracker_must_be_a_sync_tracker_or_a_function_returning_one(db_path: Path) -> None:
    async_tracker = at.Tracker(at.Emitter("http://127.0.0.1:9", storage=at.MemoryStorage()))
    with pytest.raises(at.ConfigurationError, match=r"sync\.Tracker; the async"):
        Tracking(Flask("shop"), async_tracker)  # type: ignore[arg-type]
    with pytest.raises(at.ConfigurationError, match="needs a tracker"):
        Tracking().init_app(Flask("shop"))
    with pytest.raises(at.ConfigurationError, match="trusted_proxies entry"):
        Tracking(tracker=lambda: async_tracker, trusted_proxies=["not-an-ip"])  # type: ignore[arg-type]
    app = shop(lambda: async_tracker)  # type: ignore[arg-type,return-value]
    with app.app_context(), pytest.raises(at.ConfigurationError, match="function's result"):
        get_tracker()


def test_one_extension_sets_up_several_apps_each_with_its_own_tracker(
    make_tracker: Callable[[], sync.Tracker],
) -> None:
    tracking = Tracking(tracker=make_tracker)
    first, second = Flask("first"), Flask("second")
    tracking.init_app(first)
    tracking.init_app(second)
    with first.app_context():
        one = get_tracker()
    with second.app_context():
        assert get_tracker() is not one
    with Flask("bare").app_context(), pytest.raises(at.ConfigurationError, match="no asynctracker"):
        get_tracker()
