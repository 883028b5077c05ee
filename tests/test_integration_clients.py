"""A custom ``httpx.AsyncClient`` in the emitter, owned by the app, under a real server.

Users pass their own client (proxies, certificates, one pool for the whole app) and
close it in their app's lifespan or cleanup. The tracker's final flush must happen
while that client is still open: these tests stop the app while an event tracked in a
request still waits (the collector answered the first send with 503 and Retry-After),
and check that the event reaches the collector on 127.0.0.1 and that nothing is logged
as an ERROR on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

import httpx
import pytest
from aiohttp import web
from fastapi import Depends, FastAPI
from web_support import aiohttp_serving, uvicorn_serving

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply
from asynctracker.integrations import aiohttp as at_aiohttp
from asynctracker.integrations import fastapi as at_fastapi


@pytest.fixture
def busy_collector(collector: Collector) -> Collector:
    """Answers the first request 503 with Retry-After 60, then accepts: a tracked event
    is still waiting when the app stops a moment later."""
    answered: list[ReceivedRequest] = []

    def first_busy(request: ReceivedRequest) -> Reply | None:
        answered.append(request)
        return Reply(503, {"Retry-After": "60"}) if len(answered) == 1 else None

    collector.responder = first_busy
    return collector


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The records logged while the test runs (the library's from WARNING up)."""
    with caplog.at_level(logging.WARNING, logger="asynctracker"):
        yield caplog.records


def error_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR]


def make_emitter(collector: Collector, client: httpx.AsyncClient) -> at.Emitter:
    return at.Emitter(collector.url, http_client=client, storage=at.MemoryStorage())


async def buy(base_url: str, tracker: Callable[[], at.Tracker]) -> None:
    """Buy a mug, then wait until the collector has asked for its event to come back
    later: the app then stops with the event still waiting, as in a deploy."""
    async with httpx.AsyncClient(base_url=base_url) as browser:
        response = await browser.post("/buy/mug")
        assert response.status_code == 200, response.text
    emitter = tracker().emitter
    for _ in range(1000):
        if emitter.stats().retried:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the collector's 503 never reached the emitter")


def fastapi_shop(app: FastAPI) -> FastAPI:
    @app.post("/buy/{sku}")
    async def buy_item(
        sku: str, tracker: Annotated[at.Tracker, Depends(at_fastapi.get_tracker)]
    ) -> str:
        return await tracker.track_struct_event("shop", "buy", label=sku)

    return app


async def test_fastapi_lifespan_that_closes_the_client_after_the_trackers_lifespan(
    busy_collector: Collector, errors: list[logging.LogRecord]
) -> None:
    client = httpx.AsyncClient(timeout=5)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client:  # the app's own client, closed when the app stops
            yield

    def make_tracker() -> at.Tracker:
        return at.Tracker(make_emitter(busy_collector, client), app_id="shop")

    app = fastapi_shop(
        FastAPI(lifespan=at_fastapi.tracker_lifespan(make_tracker, lifespan=lifespan))
    )
    async with uvicorn_serving(app) as base_url:
        await buy(base_url, lambda: getattr(app.state, at_fastapi.STATE_KEY))

    assert client.is_closed
    assert [e.payload["se_la"] for e in busy_collector.events] == ["mug"]
    assert error_lines(errors) == []


async def test_fastapi_running_tracker_inside_the_apps_own_client(
    busy_collector: Collector, errors: list[logging.LogRecord]
) -> None:
    clients: list[httpx.AsyncClient] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
        async with httpx.AsyncClient(timeout=5) as client:
            clients.append(client)
            tracker = at.Tracker(make_emitter(busy_collector, client), app_id="shop")
            async with at_fastapi.running_tracker(app, tracker) as running:
                assert running is tracker
                await tracker.track_struct_event("app", "startup")
                yield {"http": client}
                await tracker.track_struct_event("app", "shutdown")

    app = fastapi_shop(FastAPI(lifespan=lifespan))
    async with uvicorn_serving(app) as base_url:
        await buy(base_url, lambda: getattr(app.state, at_fastapi.STATE_KEY))

    assert clients[0].is_closed
    assert not hasattr(app.state, at_fastapi.STATE_KEY)
    assert sorted(e.payload["se_ac"] for e in busy_collector.events) == [
        "buy",
        "shutdown",
        "startup",
    ]
    assert error_lines(errors) == []


async def test_running_tracker_accepts_a_factory_and_refuses_anything_else() -> None:
    app = FastAPI()
    with pytest.raises(at.ConfigurationError, match="running_tracker"):
        async with at_fastapi.running_tracker(app, lambda: "not a tracker"):  # type: ignore[arg-type, return-value]
            pass

    made: list[at.Tracker] = []

    def make() -> at.Tracker:
        made.append(at.Tracker(at.Emitter("http://127.0.0.1:1", storage=at.MemoryStorage())))
        return made[-1]

    async with at_fastapi.running_tracker(app, make) as tracker:
        assert getattr(app.state, at_fastapi.STATE_KEY) is tracker is made[0]
    assert tracker.emitter.closed


# -- aiohttp ----------------------------------------------------------------------------------

CLIENT: web.AppKey[httpx.AsyncClient] = web.AppKey("http_client", httpx.AsyncClient)


async def aiohttp_buy(request: web.Request) -> web.Response:
    tracker = at_aiohttp.get_tracker(request)
    await tracker.track_struct_event("shop", "buy", label=request.match_info["sku"])
    return web.Response(text="bought")


async def test_aiohttp_client_context_before_the_trackers(
    busy_collector: Collector, errors: list[logging.LogRecord]
) -> None:
    async def http_client(app: web.Application) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=5) as client:
            app[CLIENT] = client
            yield

    app = web.Application()
    app.cleanup_ctx.append(http_client)  # first: cleaned up after the tracker's
    at_aiohttp.setup_tracking(
        app, lambda: at.Tracker(make_emitter(busy_collector, app[CLIENT]), app_id="shop")
    )
    app.router.add_post("/buy/{sku}", aiohttp_buy)
    async with aiohttp_serving(app) as base_url:
        await buy(base_url, lambda: app[at_aiohttp.TRACKER_KEY])

    assert app[CLIENT].is_closed
    assert [e.payload["se_la"] for e in busy_collector.events] == ["mug"]
    assert error_lines(errors) == []


async def test_aiohttp_client_closed_by_a_context_added_after_setup_tracking(
    busy_collector: Collector, errors: list[logging.LogRecord]
) -> None:
    client = httpx.AsyncClient(timeout=5)

    async def close_client(app: web.Application) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = web.Application()
    at_aiohttp.setup_tracking(
        app, lambda: at.Tracker(make_emitter(busy_collector, client), app_id="shop")
    )
    app.cleanup_ctx.append(close_client)  # after: cleaned up before the tracker's
    app.router.add_post("/buy/{sku}", aiohttp_buy)
    async with aiohttp_serving(app) as base_url:
        await buy(base_url, lambda: app[at_aiohttp.TRACKER_KEY])

    assert client.is_closed
    assert [e.payload["se_la"] for e in busy_collector.events] == ["mug"]
    assert error_lines(errors) == []
