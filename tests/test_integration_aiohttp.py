"""The aiohttp integration, and the example app under a real aiohttp server."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from examples_support import (
    DUID,
    SID,
    assert_nothing_left,
    check_shop_events,
    collector_tracker,
    load_example,
    sp_id_cookie,
    visit_shop,
)
from web_support import aiohttp_serving as serving

import asynctracker as at
from asynctracker.collector import Collector
from asynctracker.integrations.aiohttp import (
    TRACKER_KEY,
    get_subject,
    get_tracker,
    setup_tracking,
    subject_from_request,
    tracker_context,
    tracking_middleware,
)
from asynctracker.testing import capture_tracker

SP_ID = sp_id_cookie(3)


async def subject_handler(request: web.Request) -> web.Response:
    return web.json_response(get_subject(request).fields)


def subject_app(
    *, middleware: bool = True, tracker: at.Tracker | None = None, **options: object
) -> web.Application:
    app = web.Application()
    if middleware:
        app.middlewares.append(tracking_middleware(tracker=tracker, **options))  # type: ignore[arg-type]
    app.router.add_get("/subject", subject_handler)
    return app


# -- the example app, under a real server ---------------------------------------------------


async def test_example_app_delivers_everything_tracked_when_the_server_stops(
    collector: Collector, db_path: Path
) -> None:
    example = load_example("aiohttp_app")
    app = example.create_app(collector_url=collector.url, db_path=str(db_path))
    headers = {"User-Agent": "Mozilla/5.0 (test)", "Accept-Language": "nl-BE,nl;q=0.9"}
    async with serving(app) as base_url:
        visit = await visit_shop(
            base_url, headers, cookie="_sp_id.9a9a", session_index=3, order_id="o-7"
        )

    # No flush here: cleaning up the app (what a stop does) delivered the events.
    check_shop_events(
        collector.events,
        visit,
        order_id="o-7",
        cart_schema=example.CART_SCHEMA,
        app_id="aiohttp-example",
        language="nl-BE",
        session_index=3,
    )
    await assert_nothing_left(db_path)


def test_example_app_reads_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCTRACKER_TRUSTED_PROXIES", "not-an-ip")
    example = load_example("aiohttp_app")
    assert example.DEFAULT_COLLECTOR_URL.startswith("http://127.0.0.1:")
    with pytest.raises(at.ConfigurationError, match="not-an-ip"):
        example.create_app()


# -- cleanup context ------------------------------------------------------------------------


async def test_cleanup_contexts_after_the_trackers_can_track_on_the_way_out(
    collector: Collector, db_path: Path
) -> None:
    async def users_context(app: web.Application) -> AsyncIterator[None]:
        tracker = app[TRACKER_KEY]
        await tracker.track_struct_event("app", "startup")
        yield
        await tracker.track_struct_event("app", "shutdown")

    async def greet(request: web.Request) -> web.Response:
        await get_tracker(request).track_struct_event("app", "greet")
        return web.Response(text="hi")

    app = web.Application()
    app.cleanup_ctx.append(tracker_context(collector_tracker(collector, db_path)))
    app.cleanup_ctx.append(users_context)
    app.router.add_get("/greet", greet)
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.get("/greet")).text == "hi"
        tracker = app[TRACKER_KEY]

    assert [e.payload["se_ac"] for e in collector.events] == ["startup", "greet", "shutdown"]
    assert tracker.emitter.closed


async def test_a_tracker_with_two_emitters_delivers_to_both_when_the_server_stops(
    collector: Collector, tmp_path: Path
) -> None:
    async with Collector() as second:
        tracker = at.Tracker(
            [
                at.Emitter(collector.url, db_name=tmp_path / "a.db"),
                at.Emitter(second.url, db_name=tmp_path / "b.db"),
            ]
        )

        async def greet(request: web.Request) -> web.Response:
            await get_tracker(request).track_struct_event("app", "greet")
            return web.Response(text="hi")

        app = web.Application()
        setup_tracking(app, tracker)
        app.router.add_get("/greet", greet)
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            assert (await client.get("/greet")).text == "hi"
        assert [e.payload["se_ac"] for e in second.events] == ["greet"]
    assert [e.payload["se_ac"] for e in collector.events] == ["greet"]
    assert all(emitter.closed for emitter in tracker.emitters)


async def test_get_tracker_without_the_context_says_what_to_do() -> None:
    request = make_mocked_request("GET", "/", app=web.Application())
    with pytest.raises(at.ConfigurationError, match="tracker_context"):
        get_tracker(request)


async def test_tracker_context_accepts_a_tracker_instance() -> None:
    async with capture_tracker() as (tracker, events):
        app = web.Application()
        app.cleanup_ctx.append(tracker_context(tracker))

        async def track(request: web.Request) -> web.Response:
            await get_tracker(request).track_struct_event("x", "y")
            return web.Response()

        app.router.add_get("/", track)
        async with serving(app) as base_url, httpx.AsyncClient() as client:
            assert (await client.get(base_url)).status_code == 200
        assert tracker.emitter.closed
    assert [event["se_ca"] for event in events] == ["x"]


# -- the request's Subject --------------------------------------------------------------------


async def test_subject_from_the_peer_headers_and_cookie() -> None:
    async with serving(subject_app()) as base_url, httpx.AsyncClient() as client:
        response = await client.get(
            f"{base_url}/subject",
            headers={
                "User-Agent": "curl/8",
                "Accept-Language": "pt-BR",
                "X-Forwarded-For": "203.0.113.9",  # the peer is not trusted: ignored
                "Cookie": f"_sp_id={SP_ID}",
            },
        )
    assert response.json() == {
        "ip": "127.0.0.1",
        "ua": "curl/8",
        "lang": "pt-BR",
        "duid": DUID,
        "vid": "3",
        "sid": SID,
    }


async def test_x_forwarded_for_is_believed_from_a_trusted_proxy() -> None:
    app = subject_app(trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"])
    async with serving(app) as base_url, httpx.AsyncClient() as client:
        response = await client.get(
            f"{base_url}/subject", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.1.1"}
        )
    assert response.json()["ip"] == "203.0.113.9"


async def test_get_subject_works_without_the_middleware() -> None:
    async with serving(subject_app(middleware=False)) as base_url, httpx.AsyncClient() as client:
        response = await client.get(f"{base_url}/subject", headers={"X-Forwarded-For": "6.6.6.6"})
    assert response.json()["ip"] == "127.0.0.1"


async def test_subject_from_request_can_trust_proxies_per_call() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "untrusted": subject_from_request(request).fields["ip"],
                "trusted": subject_from_request(request, ["127.0.0.1"]).fields["ip"],
            }
        )

    app = web.Application()
    app.router.add_get("/", handler)
    async with serving(app) as base_url, httpx.AsyncClient() as client:
        response = await client.get(base_url, headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.json() == {"untrusted": "127.0.0.1", "trusted": "203.0.113.9"}


def test_a_malformed_trusted_proxy_fails_when_the_middleware_is_made() -> None:
    with pytest.raises(at.ConfigurationError, match="not an IP address or network"):
        tracking_middleware(trusted_proxies=["10.0.0.0/33"])


# -- page views --------------------------------------------------------------------------------


async def test_page_views_are_off_by_default() -> None:
    async with capture_tracker() as (tracker, events):
        async with serving(subject_app(tracker=tracker)) as base_url, httpx.AsyncClient() as c:
            await c.get(f"{base_url}/subject")
        await tracker.flush()
    assert len(events) == 0


async def test_page_view_per_handled_request_with_url_and_referrer() -> None:
    async with capture_tracker() as (tracker, events):
        app = subject_app(tracker=tracker, track_page_views=True)
        async with serving(app) as base_url, httpx.AsyncClient() as client:
            await client.get(f"{base_url}/subject?a=1", headers={"Referer": "https://r.test/"})
            assert (await client.get(f"{base_url}/missing")).status_code == 404  # not a page
        await tracker.flush()
    assert [(pv["url"], pv["refr"]) for pv in events.of_type("pv")] == [
        (f"{base_url}/subject?a=1", "https://r.test/")
    ]
    events.assert_valid()


async def test_a_tracking_failure_never_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = subject_app(track_page_views=True)  # no tracker_context: nothing to track with
    with caplog.at_level(logging.ERROR, logger="asynctracker"):
        async with serving(app) as base_url, httpx.AsyncClient() as client:
            response = await client.get(f"{base_url}/subject")
    assert response.status_code == 200
    assert "could not track the page view of /subject" in caplog.text


async def test_setup_tracking_wires_context_and_middleware(
    collector: Collector, db_path: Path
) -> None:
    app = web.Application()
    setup_tracking(app, collector_tracker(collector, db_path), track_page_views=True)
    app.router.add_get("/subject", subject_handler)
    async with serving(app) as base_url, httpx.AsyncClient() as client:
        await client.get(f"{base_url}/subject")
    (event,) = collector.events
    assert event.payload["e"] == "pv"
    assert event.payload["url"] == f"{base_url}/subject"


# -- the request's Subject, bound for plain track_* calls -------------------------------------


async def test_the_request_subject_is_bound_in_the_handler_and_the_tasks_it_starts() -> None:
    seen: dict[str, object] = {}

    async def in_a_task() -> at.Subject | None:
        await asyncio.sleep(0)
        return at.bound_subject()

    async def handler(request: web.Request) -> web.Response:
        seen["handler"] = at.bound_subject()
        seen["task"] = await asyncio.create_task(in_a_task())
        seen["get_subject"] = get_subject(request)
        current = at.bound_subject()
        return web.json_response(current.fields if current is not None else {})

    app = web.Application(middlewares=[tracking_middleware()])
    app.router.add_get("/bound", handler)
    async with serving(app) as base_url, httpx.AsyncClient() as client:
        first = await client.get(f"{base_url}/bound", headers={"User-Agent": "first/1"})
        first_subject = seen["handler"]
        second = await client.get(f"{base_url}/bound", headers={"User-Agent": "second/2"})

    assert first.json() == {"ip": "127.0.0.1", "ua": "first/1"}
    assert second.json() == {"ip": "127.0.0.1", "ua": "second/2"}
    assert isinstance(first_subject, at.Subject)
    assert first_subject.fields["ua"] == "first/1"
    assert seen["handler"] is seen["task"] is seen["get_subject"]
    assert at.bound_subject() is None


async def test_no_subject_is_bound_without_the_middleware() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"bound": repr(at.bound_subject())})

    app = web.Application()
    app.router.add_get("/", handler)
    async with serving(app) as base_url, httpx.AsyncClient() as client:
        assert (await client.get(base_url)).json() == {"bound": "None"}


# -- which requests are page views --------------------------------------------------------------


def filter_app(tracker: at.Tracker, **options: object) -> web.Application:
    """An app with pages, probes, docs, static files, an action, a redirect and errors."""

    async def text(request: web.Request) -> web.Response:
        return web.Response(text=request.path)

    async def old(request: web.Request) -> web.Response:
        raise web.HTTPFound("/shop/mugs")

    async def boom(request: web.Request) -> web.Response:
        raise web.HTTPServiceUnavailable()

    app = web.Application(
        middlewares=[tracking_middleware(tracker=tracker, track_page_views=True, **options)]  # type: ignore[arg-type]
    )
    for path in ("/", "/shop/mugs", "/healthz", "/docs", "/openapi.json", "/static/app.css"):
        app.router.add_get(path, text)  # GET routes answer HEAD too
    app.router.add_post("/cart/{sku}", text)
    app.router.add_get("/old", old)
    app.router.add_get("/boom", boom)
    return app


async def page_views_of(requests: list[tuple[str, str]], **options: object) -> list[str]:
    """Send ``(method, path)`` requests to ``filter_app`` on a real server; tracked paths."""
    async with capture_tracker() as (tracker, events):
        app = filter_app(tracker, **options)
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            for method, path in requests:
                await client.request(method, path)
        await tracker.flush()
    events.assert_valid()
    return [event["url"].removeprefix(base_url) for event in events.of_type("pv")]


EVERY_KIND_OF_REQUEST = [
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/shop/mugs?colour=red"),
    ("GET", "/healthz"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/static/app.css"),
    ("GET", "/favicon.ico"),
    ("POST", "/cart/mug"),
    ("GET", "/old"),
    ("GET", "/missing"),
    ("GET", "/boom"),
]


async def test_by_default_only_pages_served_to_a_get_are_page_views() -> None:
    tracked = await page_views_of(EVERY_KIND_OF_REQUEST)
    assert tracked == ["/", "/shop/mugs?colour=red", "/old"]


async def test_page_view_filters_can_be_widened_and_narrowed() -> None:
    every_path = await page_views_of(
        EVERY_KIND_OF_REQUEST, methods=["get", "POST"], statuses=range(100, 600), exclude_paths=()
    )
    assert every_path == [
        "/",
        "/shop/mugs?colour=red",
        "/healthz",
        "/docs",
        "/openapi.json",
        "/static/app.css",
        "/favicon.ico",
        "/cart/mug",
        "/old",
        "/missing",
        "/boom",
    ]
    shop_only = await page_views_of(
        EVERY_KIND_OF_REQUEST, include_paths=[re.compile(r"^/shop/"), "/old"]
    )
    assert shop_only == ["/shop/mugs?colour=red", "/old"]
    errors_only = await page_views_of(EVERY_KIND_OF_REQUEST, statuses={404, 503})
    assert errors_only == ["/missing", "/boom"]
    no_shop = await page_views_of(EVERY_KIND_OF_REQUEST, exclude_paths=["/shop"])
    assert no_shop == ["/", "/healthz", "/docs", "/openapi.json", "/static/app.css", "/old"]


async def test_setup_tracking_passes_the_page_view_filters_on(
    collector: Collector, db_path: Path
) -> None:
    app = web.Application()
    setup_tracking(
        app, collector_tracker(collector, db_path), track_page_views=True, methods=["POST"]
    )
    app.router.add_get("/subject", subject_handler)
    app.router.add_post("/subject", subject_handler)
    async with serving(app) as base_url, httpx.AsyncClient() as client:
        await client.get(f"{base_url}/subject?via=get")
        await client.post(f"{base_url}/subject?via=post")
    assert [event.payload["url"] for event in collector.events] == [f"{base_url}/subject?via=post"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        pytest.param("methods", "GET", "methods must be a list", id="methods-string"),
        pytest.param("statuses", [700], "700 is not an HTTP status", id="status"),
        pytest.param("exclude_paths", ["health"], "exclude_paths entry 'health'", id="no-slash"),
    ],
)
def test_a_malformed_page_view_filter_fails_when_the_middleware_is_made(
    option: str, value: object, message: str
) -> None:
    with pytest.raises(at.ConfigurationError, match=re.escape(message)):
        tracking_middleware(**{option: value})  # type: ignore[arg-type]
