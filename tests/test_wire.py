"""The shape of what goes on the wire: URLs, headers, bodies, ``stm`` and POST chunking.

respx (its ``respx_mock`` fixture) intercepts the emitter's own httpx client, so every
request can be inspected while the emitter is configured as users configure it: no
client handed in. One catch-all route takes every request; the tests assert the URL
themselves, so a wrong one fails naming it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import respx
from iglu import check_event, check_post_body

import asynctracker as at

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


class Wire:
    """Emitters on their owned client, whose every request lands on respx's ``route``.

    The route answers 200 until a test says otherwise (``wire.route.respond(500)``, or a
    ``side_effect`` for an answer that depends on the request).
    """

    def __init__(self, router: respx.MockRouter) -> None:
        self.route = router.route(name="collector").respond(200)
        self.emitters: list[at.Emitter] = []

    @property
    def requests(self) -> list[httpx.Request]:
        return [call.request for call in self.route.calls]

    def post_events(self) -> list[list[dict[str, str]]]:
        return [json.loads(request.content)["data"] for request in self.requests]

    def emitter(self, collector_uri: str = "collector.test", **options: Any) -> at.Emitter:
        options.setdefault("storage", at.MemoryStorage())
        options.setdefault("retry", at.RetryPolicy(auto_retry=False))
        emitter = at.Emitter(collector_uri, **options)
        self.emitters.append(emitter)
        return emitter


@pytest.fixture
async def wire(respx_mock: respx.MockRouter) -> AsyncIterator[Wire]:
    # Asking for respx_mock first keeps the mock active until every emitter has closed.
    made = Wire(respx_mock)
    yield made
    for emitter in made.emitters:
        await emitter.aclose()


def event(n: int, *, url_size: int = 10) -> dict[str, str]:
    return {
        "e": "pv",
        "p": "srv",
        "tv": "py-test",
        "eid": str(uuid.UUID(int=n, version=4)),
        "dtm": str(1_700_000_000_000 + n),
        "url": "https://acme.com/" + "x" * url_size,
    }


async def track_all(emitter: at.Emitter) -> list[str]:
    tracker = at.Tracker(emitter, namespace="ns", app_id="app")
    ctx = [at.SelfDescribingJson("iglu:com.acme/ctx/jsonschema/1-0-0", {"a": "&=?/ é"})]
    return [
        await tracker.track_page_view(page_url="https://acme.com/?q=a&b=c d", page_title="Ho me"),
        await tracker.track_struct_event(category="shop", action="add", value=2.5, contexts=ctx),
        await tracker.track_self_describing_event(
            at.SelfDescribingJson("iglu:com.acme/click/jsonschema/1-0-0", {"x": "+/="})
        ),
        await tracker.track_screen_view(name="home"),
        await tracker.track_timing(category="db", variable="q", timing=3),
        await tracker.track_ecommerce_transaction(
            order_id="o", total_value=1, items=[at.EcommerceItem(sku="s", price=1)]
        ),
    ]


# -- POST ---------------------------------------------------------------------------------


async def test_post_request_shape(wire: Wire) -> None:
    emitter = wire.emitter()
    eids = await track_all(emitter)
    assert await emitter.flush() == 0

    sent: list[dict[str, str]] = []
    for request in wire.requests:
        assert request.method == "POST"
        assert str(request.url) == f"https://collector.test{TP2}"
        assert request.headers["content-type"] == "application/json; charset=utf-8"
        document = json.loads(request.content)
        assert document["schema"] == PAYLOAD_DATA
        assert set(document) == {"schema", "data"}
        sent += check_post_body(request.content)
    assert {e["eid"] for e in sent} >= set(eids)
    assert len(sent) == 7  # the transaction has one item


async def test_post_body_is_compact_json(wire: Wire) -> None:
    emitter = wire.emitter()
    await emitter.add(event(1))
    await emitter.flush()
    [request] = wire.requests
    body = request.content.decode()
    assert body.startswith('{"schema":"' + PAYLOAD_DATA + '","data":[{')
    assert ": " not in body
    assert ", " not in body


async def test_every_post_request_has_exactly_one_stm_shared_by_all_its_events(
    wire: Wire,
) -> None:
    storage = at.MemoryStorage()
    for n in range(50):
        await storage.add_event_row(event(n, url_size=40))
    emitter = wire.emitter(storage=storage, byte_limit_post=2_000)
    before = int(time.time() * 1000)
    await emitter.flush()
    after = int(time.time() * 1000)

    assert wire.route.call_count > 1
    for events in wire.post_events():
        stms = {e["stm"] for e in events}
        assert len(stms) == 1
        [stm] = stms
        assert stm.isdigit()
        assert before <= int(stm) <= after
    assert sum(len(events) for events in wire.post_events()) == 50


@pytest.mark.parametrize("request_type", ["POST", "GET"])
async def test_stm_is_never_stored(wire: Wire, request_type: str) -> None:
    wire.route.respond(500)
    storage = at.MemoryStorage()
    emitter = wire.emitter(storage=storage, request_type=request_type)
    await track_all(emitter)
    assert await emitter.flush() == 7
    assert wire.route.called
    rows = await storage.get_all_event_rows()
    assert len(rows) == 7
    assert all("stm" not in row.event for row in rows)
    assert all('"stm"' not in row.raw for row in rows)


async def test_stored_events_do_not_carry_stm_of_an_earlier_send(wire: Wire) -> None:
    wire.route.respond(500)
    storage = at.MemoryStorage()
    emitter = wire.emitter(storage=storage)
    await emitter.add(event(1))
    await emitter.flush()
    await emitter.flush()
    assert wire.route.call_count >= 2
    for events in wire.post_events():
        [sent] = events
        assert list(sent).count("stm") == 1


# -- GET ----------------------------------------------------------------------------------


async def test_get_sends_one_form_encoded_event_per_request(wire: Wire) -> None:
    storage = at.MemoryStorage()
    emitter = wire.emitter(storage=storage, request_type="GET")
    eids = await track_all(emitter)
    assert await emitter.flush() == 0

    received: list[dict[str, str]] = []
    for request in wire.requests:
        assert request.method == "GET"
        assert request.content == b""
        url = urlsplit(str(request.url))
        assert (url.scheme, url.netloc, url.path) == ("https", "collector.test", "/i")
        pairs = parse_qsl(url.query, keep_blank_values=True, strict_parsing=True)
        event = dict(pairs)
        assert len(event) == len(pairs)  # no repeated keys
        assert event["stm"].isdigit()
        check_event(event)
        received.append(event)
    assert len(received) == 7
    assert {e["eid"] for e in received} >= set(eids)
    page_view = next(e for e in received if e["e"] == "pv")
    assert page_view["url"] == "https://acme.com/?q=a&b=c d"
    assert page_view["page"] == "Ho me"


async def test_get_query_round_trips_every_stored_value(wire: Wire) -> None:
    storage = at.MemoryStorage()
    tricky = {**event(1), "url": "https://a/?x=1&y=2#frag", "page": "100% = ünï +/"}
    await storage.add_event_row(tricky)
    emitter = wire.emitter(storage=storage, request_type="GET")
    await emitter.flush()
    [request] = wire.requests
    sent = dict(parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True))
    assert {k: v for k, v in sent.items() if k != "stm"} == tricky


# -- collector_uri forms ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "protocol", "base"),
    [
        pytest.param("collector.acme.com", "https", "https://collector.acme.com", id="host"),
        pytest.param("collector.acme.com", "http", "http://collector.acme.com", id="host-http"),
        pytest.param("localhost:8080", "https", "https://localhost:8080", id="host-port"),
        pytest.param("127.0.0.1:9090", "http", "http://127.0.0.1:9090", id="ip-port-http"),
        pytest.param("acme.com/collect", "https", "https://acme.com/collect", id="host-prefix"),
        pytest.param("acme.com:81/a/b/", "https", "https://acme.com:81/a/b", id="port-prefix"),
        pytest.param("http://acme.com", "https", "http://acme.com", id="http-url-wins"),
        pytest.param("https://acme.com:8443/p", "http", "https://acme.com:8443/p", id="https-url"),
        pytest.param("HTTP://acme.com/", "https", "http://acme.com", id="uppercase-scheme"),
        pytest.param("  acme.com  ", "https", "https://acme.com", id="surrounding-spaces"),
        pytest.param("[::1]:8080", "http", "http://[::1]:8080", id="ipv6"),
    ],
)
@pytest.mark.parametrize("request_type", ["POST", "GET"])
async def test_collector_uri_forms(
    wire: Wire, uri: str, protocol: str, base: str, request_type: str
) -> None:
    emitter = wire.emitter(uri, protocol=protocol, request_type=request_type)
    await emitter.add(event(1))
    assert await emitter.flush() == 0
    [request] = wire.requests
    url = str(request.url)
    if request_type == "POST":
        assert url == base + TP2
    else:
        assert url.split("?")[0] == base + "/i"


async def test_default_protocol_is_https(wire: Wire) -> None:
    emitter = wire.emitter("collector.acme.com")
    await emitter.add(event(1))
    await emitter.flush()
    assert wire.requests[0].url.scheme == "https"


# -- POST chunking ------------------------------------------------------------------------

LIMITS = [200, 300, 301, 450, 777, 1_000, 1_500, 2_048, 4_000, 10_000, 40_000]
SIZES = {
    "tiny": lambda n: 0,
    "small": lambda n: 20,
    "mixed": lambda n: (n * 37) % 400,
    "growing": lambda n: n * 7,
    "some-huge": lambda n: 3_000 if n % 11 == 5 else (n * 13) % 90,
    "unicode": lambda n: n % 50,
}


@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("sizes", list(SIZES))
async def test_post_bodies_never_exceed_the_byte_limit_and_keep_order(
    wire: Wire, limit: int, sizes: str
) -> None:
    size_of = SIZES[sizes]
    storage = at.MemoryStorage()
    originals = []
    for n in range(60):
        payload = event(n, url_size=size_of(n))
        if sizes == "unicode":
            payload["page"] = "é€😀" * (size_of(n) or 1)  # empty values are left out
        originals.append(payload)
        await storage.add_event_row(payload)
    emitter = wire.emitter(storage=storage, byte_limit_post=limit)
    assert await emitter.flush() == 0

    order = {p["eid"]: i for i, p in enumerate(originals)}
    chunks: list[list[int]] = []
    for request in wire.requests:
        events = check_post_body(request.content)
        # Only an event too big for any body on its own may be over the limit, alone.
        assert len(request.content) <= limit or len(events) == 1
        for sent in events:
            stripped = {k: v for k, v in sent.items() if k != "stm"}
            assert stripped == originals[order[sent["eid"]]]
        chunks.append([order[e["eid"]] for e in events])
    for chunk in chunks:
        assert chunk == list(range(chunk[0], chunk[0] + len(chunk)))  # contiguous, in order
    assert sorted(i for chunk in chunks for i in chunk) == list(range(60))


@pytest.mark.parametrize("limit", [500, 1_000, 5_000])
async def test_chunks_are_filled_greedily(wire: Wire, limit: int) -> None:
    storage = at.MemoryStorage()
    for n in range(40):
        await storage.add_event_row(event(n, url_size=30))
    emitter = wire.emitter(storage=storage, byte_limit_post=limit)
    await emitter.flush()
    requests = sorted(wire.requests, key=lambda r: json.loads(r.content)["data"][0]["dtm"])
    last = requests[-1]
    event_size = len(last.content) // len(json.loads(last.content)["data"]) + 1
    # every chunk but the last could not have taken one more event
    for request in requests[:-1]:
        assert len(request.content) + event_size > limit


@pytest.mark.parametrize(
    ("status", "left"),
    [
        pytest.param(200, 0, id="200-deleted"),
        pytest.param(302, 1, id="302-kept"),
        pytest.param(500, 1, id="500-kept"),
        pytest.param(503, 1, id="503-kept"),
    ],
)
async def test_single_oversize_event_is_sent_alone_and_its_status_decides(
    wire: Wire, status: int, left: int
) -> None:
    limit = 1_000
    storage = at.MemoryStorage()
    await storage.add_event_row(event(0))
    await storage.add_event_row(event(1, url_size=5_000))
    await storage.add_event_row(event(2))
    wire.route.mock(
        side_effect=lambda request: httpx.Response(status if len(request.content) > limit else 200)
    )
    emitter = wire.emitter(storage=storage, byte_limit_post=limit)

    assert await emitter.flush() == left

    huge = [r for r in wire.requests if len(r.content) > limit]
    assert huge
    for request in huge:
        [alone] = check_post_body(request.content)
        assert alone["eid"] == event(1)["eid"]
    small = [
        e["eid"]
        for r in wire.requests
        if len(r.content) <= limit
        for e in json.loads(r.content)["data"]
    ]
    assert sorted(small) == sorted([event(0)["eid"], event(2)["eid"]])
    rows = await storage.get_all_event_rows()
    assert [row.event["eid"] for row in rows] == ([event(1)["eid"]] if left else [])


async def test_limit_smaller_than_any_event_sends_each_event_alone(wire: Wire) -> None:
    storage = at.MemoryStorage()
    for n in range(5):
        await storage.add_event_row(event(n))
    emitter = wire.emitter(storage=storage, byte_limit_post=10)
    assert await emitter.flush() == 0
    assert sorted(len(events) for events in wire.post_events()) == [1] * 5
