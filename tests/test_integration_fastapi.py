"""The FastAPI/Starlette integration, and the example app under a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
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
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse
from web_support import uvicorn_serving as serving

import asynctracker as at
from asynctracker.collector import Collector
from asynctracker.integrations.fastapi import (
    STATE_KEY,
    TrackingMiddleware,
    get_subject,
    get_tracker,
    subject_from_request,
    tracker_lifespan,
)
from asynctracker.testing import capture_tracker

SP_ID = sp_id_cookie(7)


def subject_app(**middleware: object) -> FastAPI:
    """An app whose endpoint answers with the fields of the request's Subject."""
    app = FastAPI()

    @app.get("/subject")
    async def subject(subject: Annotated[at.Subject, Depends(get_subject)]) -> dict[str, str]:
        return subject.fields

    app.add_middleware(TrackingMiddleware, **middleware)  # type: ignore[arg-type]
    return app


async def subject_fields(
    app: FastAPI, *, peer: str = "198.51.100.4", headers: dict[str, str] | None = None
) -> dict[str, str]:
    transport = httpx.ASGITransport(app=app, client=(peer, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        response = await client.get("/subject", headers=headers)
    assert response.status_code == 200, response.text
    fields: dict[str, str] = response.json()
    return fields


# -- the example app, under a real server ---------------------------------------------------


async def test_example_app_delivers_everything_tracked_when_the_server_stops(
    collector: Collector, db_path: Path
) -> None:
    example = load_example("fastapi_app")
    app = example.create_app(collector_url=collector.url, db_path=str(db_path))
    headers = {
        "User-Agent": "Mozilla/5.0 (test)",
        "Accept-Language": "de-CH,de;q=0.9,en;q=0.5",
        "Referer": "https://search.test/?q=mugs",
    }
    async with serving(app) as base_url:
        visit = await visit_shop(
            base_url, headers, cookie="_sp_id.1fff", session_index=7, order_id="o-42"
        )

    # No flush here: stopping the server (lifespan shutdown) delivered the events.
    by_type = check_shop_events(
        collector.events,
        visit,
        order_id="o-42",
        cart_schema=example.CART_SCHEMA,
        app_id="fastapi-example",
        language="de-CH",
        session_index=7,
    )
    assert by_type["ti"][0]["ti_sk"] == "mug"
    assert {pv["refr"] for pv in by_type["pv"]} == {"https://search.test/?q=mugs"}
    await assert_nothing_left(db_path)


def test_example_app_reads_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCTRACKER_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
    example = load_example("fastapi_app")
    assert example.DEFAULT_COLLECTOR_URL.startswith("http://127.0.0.1:")
    app = example.create_app()
    (middleware,) = [m for m in app.user_middleware if m.cls is TrackingMiddleware]
    assert middleware.kwargs["trusted_proxies"] == ["10.0.0.0/8", "192.0.2.1"]


# -- lifespan ---------------------------------------------------------------------------------


async def test_lifespan_composes_with_the_users_own(collector: Collector, db_path: Path) -> None:
    steps: list[str] = []

    @contextlib.asynccontextmanager
    async def users_lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        tracker = get_tracker_from_app(app)
        await tracker.track_struct_event("app", "startup")
        steps.append("user startup")
        yield {"greeting": "hello"}
        steps.append("user shutdown")
        await tracker.track_struct_event("app", "shutdown")

    app = FastAPI(
        lifespan=tracker_lifespan(collector_tracker(collector, db_path), lifespan=users_lifespan)
    )

    @app.get("/greet")
    async def greet(request: Request, tracker: Annotated[at.Tracker, Depends(get_tracker)]) -> str:
        await tracker.track_struct_event("app", "greet")
        greeting: str = request.state.greeting
        return greeting

    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.get("/greet")).json() == "hello"

    assert steps == ["user startup", "user shutdown"]
    assert [e.payload["se_ac"] for e in collector.events] == ["startup", "greet", "shutdown"]
    assert not hasattr(app.state, STATE_KEY)


async def test_a_tracker_with_two_emitters_runs_the_users_shutdown_and_delivers_to_both(
    collector: Collector, tmp_path: Path
) -> None:
    steps: list[str] = []

    @contextlib.asynccontextmanager
    async def users_lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        steps.append("user shutdown")

    async with Collector() as second:
        tracker = at.Tracker(
            [
                at.Emitter(collector.url, db_name=tmp_path / "a.db"),
                at.Emitter(second.url, db_name=tmp_path / "b.db"),
            ]
        )
        app = FastAPI(lifespan=tracker_lifespan(tracker, lifespan=users_lifespan))

        @app.get("/greet")
        async def greet(tracker: Annotated[at.Tracker, Depends(get_tracker)]) -> str:
            await tracker.track_struct_event("app", "greet")
            return "hi"

        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            assert (await client.get("/greet")).json() == "hi"
        assert [e.payload["se_ac"] for e in second.events] == ["greet"]
    assert steps == ["user shutdown"]
    assert [e.payload["se_ac"] for e in collector.events] == ["greet"]


def get_tracker_from_app(app: FastAPI) -> at.Tracker:
    tracker = getattr(app.state, STATE_KEY)
    assert isinstance(tracker, at.Tracker)
    return tracker


async def test_a_tracker_factory_lets_the_app_start_twice(
    collector: Collector, db_path: Path
) -> None:
    made: list[at.Tracker] = []

    def make() -> at.Tracker:
        made.append(collector_tracker(collector, db_path)())
        return made[-1]

    app = FastAPI(lifespan=tracker_lifespan(make))
    app.add_middleware(TrackingMiddleware, track_page_views=True)

    @app.get("/")
    async def home() -> str:
        return "ok"

    for _ in range(2):
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            assert (await client.get("/")).status_code == 200

    assert len(made) == 2
    assert made[0] is not made[1]
    assert all(tracker.emitter.closed for tracker in made)
    assert [e.payload["e"] for e in collector.events] == ["pv", "pv"]


async def test_lifespan_accepts_a_tracker_instance() -> None:
    async with capture_tracker() as (tracker, events):
        app = FastAPI(lifespan=tracker_lifespan(tracker))
        async with app.router.lifespan_context(app):
            assert get_tracker_from_app(app) is tracker
            await tracker.track_struct_event("a", "b")
        assert tracker.emitter.closed
    assert [event["se_ca"] for event in events] == ["a"]


async def test_get_tracker_without_lifespan_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def home(tracker: Annotated[at.Tracker, Depends(get_tracker)]) -> str:
        return "unreachable"

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
        with pytest.raises(at.ConfigurationError, match="tracker_lifespan"):
            await client.get("/")


# -- the request's Subject --------------------------------------------------------------------


async def test_subject_carries_peer_user_agent_language_and_id_cookie() -> None:
    fields = await subject_fields(
        subject_app(),
        headers={
            "User-Agent": "curl/8",
            "Accept-Language": "fr-CA;q=1, fr;q=0.8",
            "Cookie": f"other=1; _sp_id.ab12={SP_ID}",
        },
    )
    assert fields == {
        "ip": "198.51.100.4",
        "ua": "curl/8",
        "lang": "fr-CA",
        "duid": DUID,
        "vid": "7",
        "sid": SID,
    }


@pytest.mark.parametrize(
    ("peer", "trusted", "forwarded", "expected"),
    [
        pytest.param("198.51.100.4", [], "203.0.113.9", "198.51.100.4", id="untrusted-peer"),
        pytest.param("10.0.0.2", ["10.0.0.0/8"], "203.0.113.9", "203.0.113.9", id="trusted"),
        pytest.param(
            "10.0.0.2",
            ["10.0.0.0/8"],
            "6.6.6.6, 203.0.113.9, 10.0.0.7",
            "203.0.113.9",
            id="spoofed-left-entry-ignored",
        ),
        pytest.param(
            "10.0.0.2", ["10.0.0.0/8"], "10.0.0.9, 10.0.0.8", "10.0.0.9", id="all-trusted"
        ),
        pytest.param(
            "10.0.0.2", ["10.0.0.0/8"], "203.0.113.9, junk", "10.0.0.2", id="malformed-hop"
        ),
        pytest.param(
            "10.0.0.2", ["10.0.0.0/8"], "203.0.113.9:4711", "203.0.113.9", id="hop-with-port"
        ),
        pytest.param("::ffff:10.0.0.2", ["10.0.0.2"], "[2001:db8::5]:80", "2001:db8::5", id="ipv6"),
    ],
)
async def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str, trusted: list[str], forwarded: str, expected: str
) -> None:
    app = subject_app(trusted_proxies=trusted)
    fields = await subject_fields(app, peer=peer, headers={"X-Forwarded-For": forwarded})
    assert fields["ip"] == expected


@pytest.mark.parametrize("header", ["*", "", "q=1;;", "x" * 40])
async def test_unusable_accept_language_is_left_out(header: str) -> None:
    fields = await subject_fields(subject_app(), headers={"Accept-Language": header})
    assert "lang" not in fields


async def test_get_subject_works_without_the_middleware() -> None:
    app = FastAPI()

    @app.get("/subject")
    async def endpoint(subject: Annotated[at.Subject, Depends(get_subject)]) -> dict[str, str]:
        return subject.fields

    fields = await subject_fields(app, headers={"X-Forwarded-For": "203.0.113.9"})
    assert fields["ip"] == "198.51.100.4"


async def test_subject_from_request_can_trust_proxies_per_call() -> None:
    app = FastAPI()

    @app.get("/subject")
    async def subject(request: Request) -> dict[str, str]:
        return subject_from_request(request, trusted_proxies=["198.51.100.0/24"]).fields

    fields = await subject_fields(app, headers={"X-Forwarded-For": "203.0.113.9"})
    assert fields["ip"] == "203.0.113.9"


def test_a_malformed_trusted_proxy_fails_at_startup() -> None:
    with pytest.raises(at.ConfigurationError, match="not an IP address or network"):
        TrackingMiddleware(FastAPI(), trusted_proxies=["10.0.0.0/33"])
    with pytest.raises(at.ConfigurationError, match="list"):
        TrackingMiddleware(FastAPI(), trusted_proxies="10.0.0.1")


# -- page views --------------------------------------------------------------------------------


async def test_page_views_are_off_by_default() -> None:
    async with capture_tracker() as (tracker, events):
        await subject_fields(subject_app(tracker=tracker))
        await tracker.flush()
    assert len(events) == 0


async def test_page_view_per_request_with_url_referrer_and_subject() -> None:
    async with capture_tracker() as (tracker, events):
        app = subject_app(tracker=tracker, track_page_views=True)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            await client.get("/subject?a=1", headers={"Referer": "https://r.test/"})
            await client.get("/subject")
        await tracker.flush()
    assert [(pv["url"], pv.get("refr")) for pv in events.of_type("pv")] == [
        ("http://shop.test/subject?a=1", "https://r.test/"),
        ("http://shop.test/subject", None),
    ]
    assert {pv["ip"] for pv in events} == {"198.51.100.4"}
    events.assert_valid()


async def test_a_tracking_failure_never_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = subject_app(track_page_views=True)  # no lifespan: no tracker to find
    with caplog.at_level(logging.ERROR, logger="asynctracker"):
        fields = await subject_fields(app)
    assert fields["ip"] == "198.51.100.4"
    assert "could not track the page view of /subject" in caplog.text


async def test_a_closed_tracker_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async with capture_tracker() as (tracker, _):
        pass
    with caplog.at_level(logging.ERROR, logger="asynctracker"):
        await subject_fields(subject_app(tracker=tracker, track_page_views=True))
    assert "ClosedError" in caplog.text


# -- the request's Subject, bound for plain track_* calls -------------------------------------


async def test_the_request_subject_is_bound_in_the_endpoint_and_the_tasks_it_starts() -> None:
    app = FastAPI()
    app.add_middleware(TrackingMiddleware)
    seen: dict[str, object] = {}

    async def in_a_task() -> at.Subject | None:
        await asyncio.sleep(0)
        return at.bound_subject()

    async def after_the_response() -> None:
        seen["background"] = at.bound_subject()

    @app.get("/bound")
    async def bound(
        subject: Annotated[at.Subject, Depends(get_subject)], background: BackgroundTasks
    ) -> dict[str, str]:
        seen["endpoint"] = at.bound_subject()
        seen["task"] = await asyncio.create_task(in_a_task())
        seen["dependency"] = subject
        background.add_task(after_the_response)
        current = at.bound_subject()
        return current.fields if current is not None else {}

    async with serving(app) as base_url, httpx.AsyncClient() as client:
        first = await client.get(f"{base_url}/bound", headers={"User-Agent": "first/1"})
        first_subject = seen["endpoint"]
        second = await client.get(f"{base_url}/bound", headers={"User-Agent": "second/2"})

    assert first.json() == {"ip": "127.0.0.1", "ua": "first/1"}
    assert second.json() == {"ip": "127.0.0.1", "ua": "second/2"}
    assert isinstance(first_subject, at.Subject)
    assert first_subject.fields["ua"] == "first/1"
    assert seen["endpoint"] is seen["task"] is seen["dependency"] is seen["background"]
    assert at.bound_subject() is None


async def test_no_subject_is_bound_without_the_middleware() -> None:
    app = FastAPI()

    @app.get("/subject")
    async def endpoint() -> dict[str, str]:
        return {"bound": repr(at.bound_subject())}

    assert await subject_fields(app) == {"bound": "None"}


# -- which requests are page views --------------------------------------------------------------


def filter_app(tracker: at.Tracker, **options: object) -> FastAPI:
    """An app with pages, probes, docs, static files, an action, a redirect and errors."""
    app = FastAPI()
    app.add_middleware(TrackingMiddleware, tracker=tracker, track_page_views=True, **options)  # type: ignore[arg-type]

    @app.get("/")
    async def home() -> str:
        return "home"

    @app.head("/", include_in_schema=False)
    async def home_head() -> None:
        return None

    @app.get("/shop/mugs")
    async def mugs() -> str:
        return "mugs"

    @app.get("/healthz")
    async def health() -> str:
        return "ok"

    @app.get("/static/app.css")
    async def css() -> str:
        return "body {}"

    @app.post("/cart/{sku}")
    async def add(sku: str) -> str:
        return sku

    @app.get("/old")
    async def old() -> RedirectResponse:
        return RedirectResponse("/shop/mugs")

    @app.get("/boom")
    async def boom() -> None:
        raise HTTPException(status_code=503)

    return app


async def page_views_of(requests: list[tuple[str, str]], **options: object) -> list[str]:
    """Send ``(method, path)`` requests to ``filter_app`` under uvicorn; tracked paths."""
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


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        pytest.param("methods", "GET", "methods must be a list", id="methods-string"),
        pytest.param("methods", ["GET", "G T"], "'G T' is not an HTTP method", id="method"),
        pytest.param("statuses", [200, 99], "99 is not an HTTP status", id="status"),
        pytest.param("statuses", "200", "statuses must be", id="statuses-string"),
        pytest.param("exclude_paths", "/health", "exclude_paths must be a list", id="exclude"),
        pytest.param("include_paths", ["shop"], "include_paths entry 'shop'", id="no-slash"),
        pytest.param("include_paths", [3], "include_paths entry 3", id="not-a-path"),
    ],
)
def test_a_malformed_page_view_filter_fails_when_the_middleware_is_made(
    option: str, value: object, message: str
) -> None:
    with pytest.raises(at.ConfigurationError, match=re.escape(message)):
        TrackingMiddleware(FastAPI(), **{option: value})  # type: ignore[arg-type]


async def test_page_view_filters_see_the_path_as_the_routes_do_behind_a_root_path() -> None:
    async with capture_tracker() as (tracker, events):
        app = filter_app(tracker, include_paths=["/shop/", "/healthz"], exclude_paths=["/healthz"])
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            for path in ("/api/shop/mugs", "/api/healthz", "/api/"):
                assert (await client.get(path)).status_code == 200
        await tracker.flush()
    assert [event["url"] for event in events.of_type("pv")] == ["http://shop.test/api/shop/mugs"]
