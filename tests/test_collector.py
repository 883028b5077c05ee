"""The local collector and the tracker-protocol validator, over real HTTP on 127.0.0.1.

Good events are built by hand here (not by the tracker) so that these tests pin the wire
format independently of the code that produces it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest

from asynctracker._validate import decode_event, validate_event, validate_post_body
from asynctracker.collector import Collector, ReceivedRequest, Reply

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
SCREEN_VIEW = "iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema/1-0-0"


def b64url(value: object) -> str:
    compact = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(compact.encode()).decode().rstrip("=")


def event(**fields: str) -> dict[str, str]:
    base = {
        "e": "se",
        "p": "srv",
        "tv": "py-0.1.0",
        "eid": str(uuid.uuid4()),
        "dtm": "1700000000000",
        "stm": "1700000000123",
        "aid": "app",
        "se_ca": "shop",
        "se_ac": "add",
    }
    base.update(fields)
    return base


def self_describing(data: object, contexts: list[object] | None = None) -> dict[str, str]:
    fields = {"e": "ue", "ue_px": b64url({"schema": UNSTRUCT, "data": data})}
    if contexts is not None:
        fields["cx"] = b64url({"schema": CONTEXTS, "data": contexts})
    ev = event(**fields)
    del ev["se_ca"], ev["se_ac"]
    return ev


def post_body(*events: dict[str, str]) -> dict[str, object]:
    return {"schema": PAYLOAD_SCHEMA, "data": list(events)}


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    async with Collector() as running:
        yield running


@pytest.fixture
async def client(collector: Collector) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=5) as http:
        yield http


# -- validator ---------------------------------------------------------------------------

GOOD_EVENTS = {
    "structured": event(),
    "page view": {**event(e="pv", url="https://example.com/"), "ttm": "1700000000001"},
    "self-describing base64url": self_describing(
        {"schema": SCREEN_VIEW, "data": {"name": "home", "id": str(uuid.uuid4())}},
        contexts=[{"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"id": 1}}],
    ),
    "self-describing raw json": {
        **{k: v for k, v in event(e="ue").items() if not k.startswith("se_")},
        "ue_pr": json.dumps({"schema": UNSTRUCT, "data": {"schema": SCREEN_VIEW, "data": {}}}),
        "co": json.dumps({"schema": CONTEXTS, "data": []}),
    },
    "transaction": event(e="tr", tr_id="o1", tr_tt="10.00"),
    "transaction item": event(e="ti", ti_id="o1", ti_sk="sku", ti_pr="5.00", ti_qu="2"),
}


@pytest.mark.parametrize("good", GOOD_EVENTS.values(), ids=GOOD_EVENTS.keys())
def test_well_formed_events_have_no_problems(good: dict[str, str]) -> None:
    assert validate_event(good) == []


def test_standard_base64_with_padding_is_accepted_too() -> None:
    inner = {"schema": UNSTRUCT, "data": {"schema": SCREEN_VIEW, "data": {"name": "?>?"}}}
    padded = base64.b64encode(json.dumps(inner).encode()).decode()
    assert padded.endswith("=")
    assert "+" in padded or "/" in padded  # characters the URL-safe alphabet lacks
    assert validate_event({**self_describing({}), "ue_px": padded}) == []


BAD_EVENTS: dict[str, tuple[Mapping[str, object], str]] = {
    "missing eid": ({k: v for k, v in event().items() if k != "eid"}, "missing required key 'eid'"),
    "non-string value": ({**event(), "se_va": 3}, "'se_va' must be a string"),
    "empty value": ({**event(), "se_la": ""}, "'se_la' is empty"),
    "unknown key": ({**event(), "colour": "red"}, "unknown key 'colour'"),
    "bad eid": (event(eid="not-a-uuid"), "'eid' is not a UUID"),
    "12-digit dtm": (event(dtm="170000000000"), "'dtm' is not a 13-digit"),
    "unknown event type": (event(e="xx"), "'e' is not a known event type"),
    "unknown platform": (event(p="desktop"), "'p' is not a known platform"),
    "undecodable ue_px": (event(e="ue", ue_px="!!!not base64"), "'ue_px' is not valid base64"),
    "ue_px not json": (
        event(e="ue", ue_px=base64.urlsafe_b64encode(b"{nope").decode()),
        "'ue_px' is not valid JSON",
    ),
    "ue_px without wrapper": (
        event(e="ue", ue_px=b64url({"schema": SCREEN_VIEW, "data": {}})),
        "must be wrapped in iglu:com.snowplowanalytics.snowplow/unstruct_event",
    ),
    "inner schema not iglu": (
        event(e="ue", ue_px=b64url({"schema": UNSTRUCT, "data": {"schema": "x", "data": {}}})),
        "ue_px.data.schema is not an Iglu URI",
    ),
    "contexts entity without data": (
        event(cx=b64url({"schema": CONTEXTS, "data": [{"schema": SCREEN_VIEW}]})),
        "cx.data[0] has no 'data'",
    ),
    "co not json": (event(co="{"), "'co' is not valid JSON"),
    "page view without url": (event(e="pv"), "event type 'pv' needs 'url'"),
    "self-describing without data": (event(e="ue"), "needs 'ue_px' or 'ue_pr'"),
    "item without quantity": (
        event(e="ti", ti_id="o", ti_sk="s", ti_pr="1.00"),
        "event type 'ti' needs 'ti_qu'",
    ),
}


@pytest.mark.parametrize(("bad", "problem"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_each_protocol_violation_is_reported(bad: Mapping[str, object], problem: str) -> None:
    problems = validate_event(bad)
    assert any(problem in p for p in problems), problems


def test_decoding_replaces_encoded_fields_with_readable_json() -> None:
    screen = {"schema": SCREEN_VIEW, "data": {"name": "home"}}
    entity = {"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"id": 1}}
    decoded = decode_event(self_describing(screen, contexts=[entity]))
    assert decoded["unstruct_event"] == screen
    assert decoded["contexts"] == [entity]
    assert "ue_px" not in decoded
    assert "cx" not in decoded


def test_decoding_leaves_undecodable_values_alone() -> None:
    broken = event(e="ue", ue_px="%%%")
    assert decode_event(broken) == broken


def test_post_body_with_an_old_schema_version_is_accepted() -> None:
    body = {"schema": PAYLOAD_SCHEMA.replace("1-0-4", "1-0-0"), "data": [event()]}
    events, problems = validate_post_body(json.dumps(body).encode())
    assert problems == []
    assert len(events) == 1


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"data": 1}', b'{"data": [1]}', b"\xff\xfe"],
    ids=["truncated", "array", "data not list", "item not object", "not utf-8"],
)
def test_structurally_broken_post_bodies_yield_no_events(body: bytes) -> None:
    events, problems = validate_post_body(body)
    assert events == []
    assert problems


# -- recording ---------------------------------------------------------------------------


async def test_post_batch_is_recorded_in_order(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    batch = [event(se_la=str(i)) for i in range(3)]
    response = await client.post(TP2, json=post_body(*batch))
    assert response.status_code == 200
    assert response.content == b""
    assert [e.payload for e in collector.events] == batch
    assert all(e.method == "POST" and e.valid for e in collector.events)
    assert collector.requests[-1].status == 200
    assert collector.requests[-1].headers["content-type"] == "application/json"


async def test_collector_path_prefixes_are_accepted(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    response = await client.post("/prefix" + TP2, json=post_body(event()))
    assert response.status_code == 200
    assert len(collector.events) == 1


async def test_get_pixel_request_is_recorded_as_one_event(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    single = event(se_la="a b&c")
    response = await client.get("/i", params=single)
    assert response.status_code == 200
    [received] = collector.events
    assert received.payload == single
    assert received.method == "GET"
    assert received.valid


async def test_bad_events_are_kept_and_flagged(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    await client.post(TP2, json=post_body(event(), event(dtm="170000000000")))
    assert len(collector.good) == 1
    [bad] = collector.bad
    assert any("dtm" in error for error in bad.errors)


async def test_wrong_body_schema_marks_every_event_bad(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    await client.post(TP2, json={"schema": "iglu:x/y/jsonschema/1-0-0", "data": [event()]})
    [received] = collector.events
    assert not received.valid
    assert "body schema" in received.errors[0]


async def test_chunked_request_bodies_are_read(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    raw = json.dumps(post_body(event(), event())).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 50):
            yield raw[start : start + 50]

    response = await client.post(TP2, content=chunks())
    assert response.status_code == 200
    assert collector.requests[-1].headers["transfer-encoding"] == "chunked"
    assert len(collector.events) == 2


async def test_wait_for_events_returns_once_enough_have_arrived(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    waiter = asyncio.create_task(collector.wait_for_events(2, timeout=5))
    await client.post(TP2, json=post_body(event()))
    assert not waiter.done()
    await client.get("/i", params=event())
    assert len(await waiter) == 2


async def test_wait_for_events_times_out_with_builtin_timeout_error(
    collector: Collector,
) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        await collector.wait_for_events(1, timeout=0.05)


async def test_on_event_is_called_for_each_accepted_event() -> None:
    seen: list[str] = []
    async with (
        Collector(on_event=lambda ev: seen.append(ev.payload["se_la"])) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        await client.post(TP2, json=post_body(event(se_la="1"), event(se_la="2")))
    assert seen == ["1", "2"]


# -- bad requests --------------------------------------------------------------------------


async def test_oversize_body_is_refused_with_413() -> None:
    async with (
        Collector(max_body_bytes=1000) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        response = await client.post(TP2, json=post_body(*[event() for _ in range(20)]))
        assert response.status_code == 413
        assert collector.events == []
        assert (await client.get("/health")).status_code == 200


async def test_oversize_chunked_body_is_refused_with_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    async with (
        Collector(max_body_bytes=1000) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        response = await client.post(TP2, content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"schema": "x"}', b"\xff"], ids=["syntax", "no data", "bytes"]
)
async def test_malformed_post_body_gets_400_and_server_keeps_serving(
    collector: Collector, client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(TP2, content=body)
    assert response.status_code == 400
    assert response.json()["errors"]
    assert collector.events == []
    assert (await client.post(TP2, json=post_body(event()))).status_code == 200


async def test_garbage_on_the_socket_gets_400(collector: Collector) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", collector.port)
    writer.write(b"HELLO\r\n\r\n")
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 400")


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404


# -- inspection routes ---------------------------------------------------------------------


async def test_html_page_lists_events_and_escapes_their_data(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    evil = self_describing({"schema": SCREEN_VIEW, "data": {"name": "<script>alert(1)</script>"}})
    await client.post(TP2, json=post_body(evil, event(eid="nope")))
    response = await client.get("/")
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'id="events"' in page
    assert page.count('<tr class="event good">') == 1
    assert page.count('<tr class="event bad">') == 1
    assert "1 good, 1 bad" in page


async def test_json_endpoints_split_good_and_bad_and_reset_clears(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    good = self_describing({"schema": SCREEN_VIEW, "data": {"name": "home"}})
    await client.post(TP2, json=post_body(good, event(eid="nope")))

    everything = (await client.get("/events")).json()
    assert [e["payload"] for e in everything] == [good, event(eid="nope")]
    assert set(everything[0]) == {"payload", "decoded", "errors", "method", "received_at"}
    assert everything[0]["decoded"]["unstruct_event"]["data"] == {"name": "home"}
    [only_good] = (await client.get("/events/good")).json()
    assert only_good["payload"] == good
    [only_bad] = (await client.get("/events/bad")).json()
    assert only_bad["errors"]
    assert (await client.get("/health")).json()["events"] == 2

    assert (await client.post("/reset")).json() == {"ok": True}
    assert (await client.get("/events")).json() == []
    assert collector.events == []


async def test_inspection_routes_do_not_reach_the_responder() -> None:
    calls: list[str] = []

    def refuse(request: ReceivedRequest) -> Reply:
        calls.append(request.path)
        return Reply(503)

    async with (
        Collector(responder=refuse) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        assert (await client.get("/events")).status_code == 200
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/i", params=event())).status_code == 503
    assert calls == ["/i"]
    assert [r.path for r in collector.requests] == ["/i"]
