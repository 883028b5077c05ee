"""The aiohttp integration, and the example app under a real aiohttp server."""

from __future__ import annotations

import contextlib
import logging
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


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a real aiohttp server on 127.0.0.1; yields its base URL.

    Leaving runs ``runner.cleanup()``, the same shutdown as ``web.run_app`` on SIGTERM.
    """
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


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
            assert (await client.get(f"{base_url}/missing")).status_code == 404
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
