"""Input the pipeline cannot take is refused at the call, with the library's own errors.

Every bad call here raises InvalidEventError or ConfigurationError (both ValueErrors),
whose message names the argument; nothing is stored and what was already queued stays
queued. Before these checks the same calls escaped as UnicodeEncodeError, OverflowError,
RecursionError or a bare ValueError, or were stored and became failed events downstream
(lone surrogates, timestamps in seconds, session ids that are not UUIDs).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from iglu import check_received

import asynctracker as at
from asynctracker.collector import Collector

SCHEMA = "iglu:com.acme/thing/jsonschema/1-0-0"
LONE = "caf\ud800"
SID = "5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
MS = 1_700_000_000_123

Call = Callable[[at.Tracker], Awaitable[object]]


def nested(depth: int) -> Any:
    """``depth`` containers inside each other: nested(2) == {"k": {"k": 1}}."""
    value: Any = 1
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def item(**kwargs: Any) -> at.EcommerceItem:
    return at.EcommerceItem(**{"sku": "s", "price": 1.0, **kwargs})


def transaction(**kwargs: Any) -> Call:
    return lambda t: t.track_ecommerce_transaction(**{"order_id": "o", "total_value": 1, **kwargs})


def with_item(**kwargs: Any) -> Call:
    return lambda t: t.track_ecommerce_transaction("o", 1, items=[item(**kwargs)])


def page_view(**kwargs: Any) -> Call:
    return lambda t: t.track_page_view(**{"page_url": "https://a/", **kwargs})


def struct(**kwargs: Any) -> Call:
    return lambda t: t.track_struct_event(**{"category": "c", "action": "a", **kwargs})


def self_describing(data: Any) -> Call:
    return lambda t: t.track_self_describing_event(at.SelfDescribingJson(SCHEMA, data))


def with_context(data: Any) -> Call:
    return lambda t: t.track_page_view("https://a/", contexts=[at.SelfDescribingJson(SCHEMA, data)])


def with_subject(**kwargs: Any) -> Call:
    return lambda t: t.track_page_view("https://a/", subject=at.Subject(**kwargs))


# (call, error class, text the message must contain)
BAD_CALLS = [
    # Row 2: text that cannot be encoded as UTF-8, in every kind of field.
    pytest.param(page_view(page_title=LONE), at.InvalidEventError, "page_title", id="page_title"),
    pytest.param(page_view(page_url=LONE), at.InvalidEventError, "page_url", id="page_url"),
    pytest.param(page_view(referrer=LONE), at.InvalidEventError, "referrer", id="referrer"),
    pytest.param(struct(category=LONE), at.InvalidEventError, "category", id="se-category"),
    pytest.param(struct(action=LONE), at.InvalidEventError, "action", id="se-action"),
    pytest.param(struct(label=LONE), at.InvalidEventError, "label", id="se-label"),
    pytest.param(struct(property_=LONE), at.InvalidEventError, "property_", id="se-property"),
    pytest.param(self_describing({"v": LONE}), at.InvalidEventError, "data", id="sdj-value"),
    pytest.param(self_describing({LONE: 1}), at.InvalidEventError, "data", id="sdj-key"),
    pytest.param(with_context([LONE]), at.InvalidEventError, "data", id="context-value"),
    pytest.param(with_subject(user_id=LONE), at.ConfigurationError, "user_id", id="subj-uid"),
    pytest.param(with_subject(useragent=LONE), at.ConfigurationError, "useragent", id="subj-ua"),
    pytest.param(
        lambda t: t.track_screen_view(name=LONE), at.InvalidEventError, "name", id="screen-name"
    ),
    pytest.param(
        lambda t: t.track_timing("c", "v", 5, label=LONE), at.InvalidEventError, "label", id="tl"
    ),
    pytest.param(transaction(city=LONE), at.InvalidEventError, "city", id="tr-city"),
    pytest.param(with_item(sku=LONE), at.InvalidEventError, "sku", id="item-sku"),
    # Row 6/7: nesting the collector's parser cannot take, and the C encoder's own limit.
    pytest.param(self_describing(nested(101)), at.InvalidEventError, "deeper", id="deep-101"),
    pytest.param(self_describing(nested(980)), at.InvalidEventError, "deeper", id="deep-980"),
    pytest.param(self_describing(nested(5000)), at.InvalidEventError, "deeper", id="deep-5000"),
    pytest.param(with_context(nested(5000)), at.InvalidEventError, "deeper", id="ctx-deep-5000"),
    # Row 7: numbers beyond what a double holds.
    pytest.param(transaction(total_value=10**400), at.InvalidEventError, "total_value", id="tt"),
    pytest.param(transaction(tax_value=10**400), at.InvalidEventError, "tax_value", id="tx"),
    pytest.param(transaction(shipping=-(10**400)), at.InvalidEventError, "shipping", id="sh"),
    pytest.param(with_item(price=10**400), at.InvalidEventError, "price", id="price"),
    pytest.param(struct(value=10**5000), at.InvalidEventError, "value", id="value-5000-digits"),
    pytest.param(struct(value=10**400), at.InvalidEventError, "value", id="value-10e400"),
    pytest.param(struct(value=math.nan), at.InvalidEventError, "value", id="value-nan"),
    pytest.param(struct(value=-math.inf), at.InvalidEventError, "value", id="value-inf"),
    pytest.param(transaction(total_value=math.nan), at.InvalidEventError, "total_value", id="tn"),
    pytest.param(
        lambda t: t.track_timing("c", "v", 10**5000), at.InvalidEventError, "timing", id="timing"
    ),
    pytest.param(self_describing({"n": 10**5000}), at.InvalidEventError, "data", id="sdj-int"),
    pytest.param(with_subject(color_depth=10**5000), at.ConfigurationError, "color_depth", id="cd"),
    # Row 8: timestamps outside 13-digit epoch milliseconds, with the probable unit.
    pytest.param(page_view(timestamp=10**20 - 1), at.InvalidEventError, "timestamp", id="ts-big"),
    pytest.param(page_view(timestamp=5), at.InvalidEventError, "timestamp", id="ts-5"),
    pytest.param(
        page_view(timestamp=1_700_000_000), at.InvalidEventError, "looks like seconds", id="ts-s"
    ),
    pytest.param(
        page_view(timestamp=MS * 1000), at.InvalidEventError, "looks like microseconds", id="us"
    ),
    pytest.param(
        page_view(timestamp=MS * 10**6), at.InvalidEventError, "looks like nanoseconds", id="ns"
    ),
    pytest.param(
        page_view(true_timestamp=1_700_000_000),
        at.InvalidEventError,
        "true_timestamp=1700000000 looks like seconds",
        id="ttm-s",
    ),
    pytest.param(
        page_view(timestamp=datetime(1990, 1, 1, tzinfo=timezone.utc)),
        at.InvalidEventError,
        "timestamp=1990-01-01",
        id="ts-1990",
    ),
    pytest.param(
        page_view(true_timestamp=datetime(9999, 1, 1, tzinfo=timezone.utc)),
        at.InvalidEventError,
        "true_timestamp=9999-01-01",
        id="ttm-9999",
    ),
    # Row 9: values Enrich refuses.
    pytest.param(
        with_subject(domain_session_id="not-a-uuid"), at.ConfigurationError, "UUID", id="sid"
    ),
    pytest.param(
        with_subject(domain_session_index=2**31), at.ConfigurationError, "2147483647", id="vid"
    ),
    pytest.param(
        with_subject(screen_resolution=(2**31, 10)), at.ConfigurationError, "screen", id="res"
    ),
    pytest.param(with_subject(viewport=(10, 2**40)), at.ConfigurationError, "viewport", id="vp"),
    pytest.param(with_subject(timezone="x" * 256), at.ConfigurationError, "timezone", id="tz"),
    pytest.param(with_item(quantity=2**31), at.InvalidEventError, "quantity", id="ti_qu"),
    pytest.param(
        with_item(quantity=-(2**31) - 1),
        at.InvalidEventError,
        "quantity",
        id="ti_qu-low",
    ),
]


@pytest.fixture
async def tracker(refusing_client: httpx.AsyncClient) -> AsyncIterator[at.Tracker]:
    """A tracker on a MemoryStorage whose emitter never delivers (respx answers 500 and
    nothing retries on its own), holding one good event already queued."""
    emitter = at.Emitter(
        "collector.test",
        storage=at.MemoryStorage(),
        http_client=refusing_client,
        retry=at.RetryPolicy(auto_retry=False),
    )
    async with at.Tracker(emitter, namespace="ns", app_id="app") as made:
        await made.track_page_view("https://queued/")
        yield made


async def stored(tracker: at.Tracker) -> list[dict[str, str]]:
    return [row.event for row in await tracker.emitter.storage.get_all_event_rows()]


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw-json"])
@pytest.mark.parametrize(("call", "error", "named"), BAD_CALLS)
async def test_bad_input_raises_a_typed_error_naming_it_and_stores_nothing(
    tracker: at.Tracker, call: Call, error: type[Exception], named: str, base64_encode: bool
) -> None:
    tracker.base64_encode = base64_encode
    with pytest.raises(error, match=named) as raised:
        await call(tracker)
    assert isinstance(raised.value, ValueError)
    assert [event["url"] for event in await stored(tracker)] == ["https://queued/"]


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw-json"])
@pytest.mark.parametrize(
    ("data", "named"),
    [
        pytest.param({"v": LONE}, "the event's data", id="surrogate"),
        pytest.param(nested(5000), "the event's data is nested deeper", id="deep"),
    ],
)
async def test_event_data_spoiled_after_it_was_made_is_caught_at_the_call(
    tracker: at.Tracker, data: Any, named: str, base64_encode: bool
) -> None:
    tracker.base64_encode = base64_encode
    event = at.SelfDescribingJson(SCHEMA, {"v": "fine"})
    context = at.SelfDescribingJson(SCHEMA, {"v": "fine"})
    assert isinstance(event.data, dict)
    assert isinstance(context.data, dict)
    event.data["v"] = data
    with pytest.raises(at.InvalidEventError, match=named):
        await tracker.track_self_describing_event(event)
    context.data["v"] = data
    with pytest.raises(at.InvalidEventError, match="contexts"):
        await tracker.track_page_view("https://a/", contexts=[context])
    assert len(await stored(tracker)) == 1


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(nested(at.MAX_JSON_DEPTH), id="exactly-the-limit"),
        pytest.param([["[" * 500]], id="brackets-inside-strings"),
        pytest.param([{"k": i} for i in range(500)], id="wide-not-deep"),
        pytest.param({"name": "café 😀", "😀": "ä"}, id="non-ascii-text"),
    ],
)
async def test_data_at_the_limits_is_accepted_whole(tracker: at.Tracker, data: Any) -> None:
    await tracker.track_self_describing_event(
        at.SelfDescribingJson(SCHEMA, data), contexts=[at.SelfDescribingJson(SCHEMA, data)]
    )
    assert len(await stored(tracker)) == 2


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw"])
async def test_data_at_the_nesting_limit_is_valid_at_the_projects_own_collector(
    collector: Collector, base64_encode: bool
) -> None:
    """The collector's depth limit is the library's plus the envelopes: whatever
    track_* accepts arrives as a good event, not one flagged as too deep."""
    data = nested(at.MAX_JSON_DEPTH)
    emitter = at.Emitter(collector.url, storage=at.MemoryStorage())
    async with at.Tracker(emitter, base64_encode=base64_encode) as tracker:
        await tracker.track_self_describing_event(
            at.SelfDescribingJson(SCHEMA, data), contexts=[at.SelfDescribingJson(SCHEMA, data)]
        )
        assert await tracker.flush(10) == 0
    [received] = await collector.wait_for_events(1)
    assert received.valid, received.errors


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        pytest.param(at.MIN_TIMESTAMP_MS, "1000000000000", id="first-accepted"),
        pytest.param(at.MAX_TIMESTAMP_MS, "9999999999999", id="last-accepted"),
        pytest.param(
            datetime(2001, 9, 9, 1, 46, 40, tzinfo=timezone.utc), "1000000000000", id="dt"
        ),
    ],
)
async def test_timestamps_at_the_window_edges_are_kept(
    tracker: at.Tracker, timestamp: int | datetime, expected: str
) -> None:
    await tracker.track_page_view("https://a/", timestamp=timestamp, true_timestamp=timestamp)
    event = (await stored(tracker))[-1]
    assert (event["dtm"], event["ttm"]) == (expected, expected)


@pytest.mark.parametrize("just_outside", [at.MIN_TIMESTAMP_MS - 1, at.MAX_TIMESTAMP_MS + 1])
async def test_timestamps_just_outside_the_window_are_refused(
    tracker: at.Tracker, just_outside: int
) -> None:
    with pytest.raises(at.InvalidEventError, match="not 13-digit epoch milliseconds"):
        await tracker.track_page_view("https://a/", timestamp=just_outside)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param(LONE, "app_id", id="surrogate"),
    ],
)
def test_tracker_fields_that_cannot_be_sent_are_refused(
    tracker: at.Tracker, value: str, named: str
) -> None:
    with pytest.raises(at.ConfigurationError, match=named):
        tracker.app_id = value
    with pytest.raises(at.ConfigurationError, match="namespace"):
        at.Tracker(tracker.emitter, namespace=value)


def test_an_id_cookie_with_bad_parts_never_raises_and_sets_only_good_ones() -> None:
    cookie = f"{LONE}.1.{2**31}.x.y.not-a-uuid-but-36-characters-long-xx"
    assert at.Subject().from_id_cookie(cookie).fields == {}
    assert at.Subject().from_id_cookie(f"d.1.{2**31 - 1}.x.y.{SID}").fields == {
        "vid": str(2**31 - 1),
        "sid": SID,
    }


@pytest.mark.parametrize("timeout", [math.nan, -1, -math.inf, "1", True])
async def test_flush_refuses_a_timeout_that_is_not_a_duration(
    tracker: at.Tracker, timeout: Any
) -> None:
    with pytest.raises(at.ConfigurationError, match="timeout"):
        await tracker.flush(timeout)
    with pytest.raises(at.ConfigurationError, match="timeout"):
        await tracker.emitter.flush(timeout)


async def test_flush_with_an_infinite_timeout_waits_without_limit(
    collector: Collector, db_path: Path
) -> None:
    async with at.Tracker(at.Emitter(collector.url, db_name=db_path)) as tracker:
        await tracker.track_page_view("https://a/")
        assert await tracker.flush(math.inf) == 0
        assert await tracker.emitter.flush(10**400) == 0
    assert len(await collector.wait_for_events(1)) == 1


async def test_bad_calls_leave_a_real_file_and_a_real_collector_with_only_good_events(
    collector: Collector, db_path: Path
) -> None:
    emitter = at.Emitter(collector.url, db_name=db_path, request_type="GET")
    async with at.Tracker(emitter, base64_encode=False) as tracker:
        good = [await tracker.track_page_view("https://a/", page_title="café")]
        for param in BAD_CALLS:
            call, error, _ = param.values
            assert callable(call)
            assert isinstance(error, type)
            with pytest.raises(error):
                await call(tracker)
        good.append(await tracker.track_struct_event("c", "a", value=10**300))
        assert await tracker.flush(10) == 0
    received = await collector.wait_for_events(2)
    check_received(received)
    assert sorted(event.payload["eid"] for event in received) == sorted(good)
    assert collector.bad == []


async def raw_request_to_aiohttp(app: Any, request: bytes) -> bytes:
    """Serve ``app`` on 127.0.0.1 and send it ``request`` as raw bytes (header bytes
    that are not UTF-8 cannot be sent through an HTTP client); return the answer."""
    from web_support import aiohttp_serving

    async with aiohttp_serving(app) as url:
        host, port = httpx.URL(url).host, httpx.URL(url).port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        return answer


async def test_a_user_agent_that_is_not_utf8_neither_breaks_the_request_nor_the_queue(
    collector: Collector, db_path: Path
) -> None:
    """aiohttp decodes header bytes that are not UTF-8 to lone surrogates; the strict
    Subject setters must not turn a visitor's odd header into a 500."""
    from aiohttp import web

    from asynctracker.integrations.aiohttp import get_subject, tracking_middleware

    async with at.Tracker(at.Emitter(collector.url, db_name=db_path)) as tracker:

        async def hello(request: web.Request) -> web.Response:
            await tracker.track_struct_event("page", "hello", subject=get_subject(request))
            return web.Response(text="hello")

        app = web.Application(middlewares=[tracking_middleware(tracker=tracker)])
        app.router.add_get("/", hello)
        answer = await raw_request_to_aiohttp(
            app,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: caf\xff\xfe bot\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200")
        assert await tracker.flush(10) == 0
    [received] = await collector.wait_for_events(1)
    check_received([received])
    assert received.payload["ua"] == "caf?? bot"


async def test_a_referer_that_is_not_utf8_still_makes_a_page_view(
    collector: Collector, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The page view of a request whose Referer holds bytes that are not UTF-8 is tracked
    with the bytes replaced, not skipped with a traceback a client could repeat to flood
    the log. (aiohttp itself refuses such bytes in the path.)"""
    from aiohttp import web

    from asynctracker.integrations.aiohttp import tracking_middleware

    async with at.Tracker(at.Emitter(collector.url, db_name=db_path)) as tracker:

        async def page(request: web.Request) -> web.Response:
            return web.Response(text="page")

        app = web.Application(
            middlewares=[tracking_middleware(tracker=tracker, track_page_views=True)]
        )
        app.router.add_get("/{name}", page)
        answer = await raw_request_to_aiohttp(
            app,
            b"GET /shop HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Referer: http://a.example/\xff\xfe\r\nConnection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200")
        assert await tracker.flush(10) == 0
    [received] = await collector.wait_for_events(1)
    check_received([received])
    assert received.payload["e"] == "pv"
    assert received.payload["refr"] == "http://a.example/??"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
