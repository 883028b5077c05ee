"""Snowplow Micro's REST API, CORS and HEAD, and ``--iglu`` validation, on 127.0.0.1.

A Micro user's script calls ``/micro/all``, ``/micro/good`` (with filters) and
``/micro/reset`` and reads ``eventType``, ``schema``, ``contexts`` and ``event.app_id``;
it must work unchanged against ``asynctracker collector``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from iglu import IGLU_DIR, IGLU_FOUND, IGLU_MISSING_REASON
from test_collector import TP2, event, post_body, self_describing

from asynctracker.collector import Collector

CLICK = "iglu:com.acme/click/jsonschema/1-0-0"
USER = "iglu:com.acme/user/jsonschema/1-0-0"
SCREEN_VIEW = "iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema/1-0-0"
CLICK_SCHEMA = {
    "$schema": "http://iglu.snowplowanalytics.com/schema/jsonschema/1-0-0#",
    "self": {"vendor": "com.acme", "name": "click", "format": "jsonschema", "version": "1-0-0"},
    "type": "object",
    "properties": {"button": {"type": "string"}},
    "required": ["button"],
    "additionalProperties": False,
}


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A team's own Iglu registry folder with one schema, com.acme/click 1-0-0."""
    folder = tmp_path / "iglu" / "com.acme" / "click" / "jsonschema"
    folder.mkdir(parents=True)
    (folder / "1-0-0").write_text(json.dumps(CLICK_SCHEMA))
    return tmp_path / "iglu"


@pytest.fixture
async def client(collector: Collector) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as http:
        yield http


async def fill(client: httpx.AsyncClient) -> None:
    """One page view, one struct, two self-describing (one with a context), one bad."""
    events = [
        event(e="pv", url="https://shop.example/", aid="web"),
        event(aid="backend"),
        self_describing({"schema": CLICK, "data": {"button": "buy"}}),
        self_describing(
            {"schema": CLICK, "data": {"button": "help"}},
            contexts=[{"schema": USER, "data": {"tier": "gold"}}],
        ),
        event(eid="not-a-uuid"),
    ]
    assert (await client.post(TP2, json=post_body(*events))).status_code == 200


# -- the Micro API -------------------------------------------------------------------------


async def test_micro_all_counts_good_and_bad(client: httpx.AsyncClient) -> None:
    await fill(client)
    assert (await client.get("/micro/all")).json() == {"total": 5, "good": 4, "bad": 1}


async def test_micro_good_has_micros_shape(client: httpx.AsyncClient) -> None:
    await fill(client)
    good = (await client.get("/micro/good")).json()
    assert len(good) == 4
    by_type = {item["eventType"] for item in good}
    assert by_type == {"page_view", "struct", "unstruct"}
    page_view = next(item for item in good if item["eventType"] == "page_view")
    assert page_view["event"]["app_id"] == "web"
    assert page_view["event"]["page_url"] == "https://shop.example/"
    assert page_view["event"]["event"] == "page_view"
    assert page_view["event"]["dvce_created_tstamp"] == "2023-11-14T22:13:20.000Z"
    assert page_view["schema"] == "iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0"
    assert page_view["rawEvent"]["parameters"]["url"] == "https://shop.example/"
    clicks = [item for item in good if item["schema"] == CLICK]
    assert [item["contexts"] for item in clicks] in ([[], [USER]], [[USER], []])
    data = {item["event"]["unstruct_event"]["data"]["data"]["button"] for item in clicks}
    assert data == {"buy", "help"}
    assert all(item["event"]["event_name"] == "click" for item in clicks)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_micro_good_filters_by_schema_type_contexts_and_limit(
    client: httpx.AsyncClient, method: str
) -> None:
    await fill(client)

    async def good(**filters: object) -> list[dict[str, object]]:
        if method == "GET":
            answer = await client.get("/micro/good", params=filters)  # type: ignore[arg-type]
        else:
            answer = await client.post("/micro/good", json=filters)
        assert answer.status_code == 200, answer.text
        result: list[dict[str, object]] = answer.json()
        return result

    assert len(await good(schema=CLICK)) == 2
    assert len(await good(event_type="unstruct")) == 2
    assert len(await good(event_type="struct")) == 1
    with_user = await good(contexts=[USER] if method == "POST" else USER)
    assert [item["contexts"] for item in with_user] == [[USER]]
    assert len(await good(schema=CLICK, limit=1)) == 1


async def test_micro_bad_lists_the_errors(client: httpx.AsyncClient) -> None:
    await fill(client)
    [bad] = (await client.post("/micro/bad", json={})).json()
    assert set(bad) == {"collectorPayload", "rawEvent", "errors"}
    assert any("not a UUID" in error for error in bad["errors"])
    assert bad["rawEvent"]["parameters"]["eid"] == "not-a-uuid"


@pytest.mark.parametrize(
    ("filters", "found"),
    [
        ({"vendor": "com.snowplowanalytics.snowplow"}, 1),
        ({"vendor": "com.google.analytics"}, 0),
        ({"version": "tp2"}, 1),
        ({"version": "i"}, 0),
    ],
    ids=["snowplow vendor", "other vendor", "tp2", "i"],
)
async def test_micro_bad_filters_by_vendor_and_version_as_micro_does(
    client: httpx.AsyncClient, filters: dict[str, str], found: int
) -> None:
    await fill(client)  # the bad event came by POST (tp2)
    assert len((await client.post("/micro/bad", json=filters)).json()) == found
    assert len((await client.get("/micro/bad", params=filters)).json()) == found


async def test_micro_good_events_say_they_are_complete(client: httpx.AsyncClient) -> None:
    await fill(client)
    assert {item["incomplete"] for item in (await client.get("/micro/good")).json()} == {False}


async def test_micro_reset_empties_and_answers_the_zero_counts(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    await fill(client)
    assert (await client.get("/micro/reset")).json() == {"total": 0, "good": 0, "bad": 0}
    assert collector.events == []
    assert (await client.get("/micro/all")).json() == {"total": 0, "good": 0, "bad": 0}


async def test_micro_filters_of_the_wrong_type_get_400(client: httpx.AsyncClient) -> None:
    assert (await client.post("/micro/good", json={"limit": "x"})).status_code == 400
    assert (await client.post("/micro/good", json=[1])).status_code == 400
    assert (await client.post("/micro/good", content=b"{")).status_code == 400


# -- CORS and HEAD -------------------------------------------------------------------------


async def test_a_browser_tracker_gets_cors_answers(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    origin = {"origin": "https://shop.example"}
    preflight = await client.options(
        TP2,
        headers={
            **origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    sent = await client.post(TP2, json=post_body(event()), headers=origin)
    assert sent.headers["access-control-allow-origin"] == "https://shop.example"
    pixel = await client.get("/i", params=event(), headers=origin)
    assert pixel.headers["access-control-allow-credentials"] == "true"
    assert len(collector.events) == 2


@pytest.mark.parametrize("path", ["/events", "/micro/good", "/micro/reset", "/reset", "/"])
async def test_inspection_and_reset_routes_never_allow_other_origins(
    client: httpx.AsyncClient, path: str
) -> None:
    origin = {"origin": "https://shop.example"}
    preflight = await client.options(path, headers=origin)
    assert "access-control-allow-origin" not in preflight.headers
    answer = await client.get(path, headers=origin)
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize("path", ["/", "/health", "/events", "/micro/all", "/i"])
async def test_head_is_answered_without_a_body(
    collector: Collector, client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.head(path)
    assert answer.status_code == 200
    assert answer.content == b""
    assert collector.events == []


# -- Iglu validation -----------------------------------------------------------------------


async def test_without_iglu_the_collector_says_it_checks_the_protocol_only(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/")).text
    assert "tracker protocol only" in page
    assert "--iglu" in page


async def test_iglu_marks_unknown_schemas_and_invalid_data_bad(registry: Path) -> None:
    async with (
        Collector(iglu=registry) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        events = [
            self_describing({"schema": CLICK, "data": {"button": "buy"}}),
            self_describing({"schema": CLICK, "data": {"button": 3}}),
            self_describing(
                {"schema": CLICK, "data": {"button": "x"}},
                contexts=[{"schema": USER, "data": {}}],
            ),
            self_describing({"schema": "iglu:com.acme/unknown/jsonschema/1-0-0", "data": {}}),
        ]
        await client.post(TP2, json=post_body(*events))
        valid, wrong_type, unknown_context, unknown = collector.events
        assert valid.valid, valid.errors
        assert any("does not match" in error and "button" in error for error in wrong_type.errors)
        assert any(f"schema {USER} not found" in error for error in unknown_context.errors)
        assert any("com.acme/unknown" in error for error in unknown.errors)
        counts = (await client.get("/micro/all")).json()
        assert counts == {"total": 4, "good": 1, "bad": 3}
        schema = await client.get("/micro/iglu/com.acme/click/jsonschema/1-0-0")
        assert schema.json() == CLICK_SCHEMA
        missing = await client.get("/micro/iglu/com.acme/nope/jsonschema/1-0-0")
        assert missing.status_code == 404
        assert "Iglu registry at" in (await client.get("/")).text


@pytest.mark.skipif(not IGLU_FOUND, reason=IGLU_MISSING_REASON)
async def test_iglu_central_schemas_validate_snowplow_events() -> None:
    async with (
        Collector(iglu=IGLU_DIR) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        good = {
            "schema": SCREEN_VIEW,
            "data": {"name": "home", "id": "a" * 8 + "-aaaa" * 3 + "-" + "a" * 12},
        }
        bad = {"schema": SCREEN_VIEW, "data": {"name": 3}}
        await client.post(TP2, json=post_body(self_describing(good), self_describing(bad)))
        first, second = collector.events
        assert first.valid, first.errors
        assert any("$.name: 3 is not of type 'string'" in error for error in second.errors)


def test_iglu_without_jsonschema_is_a_one_line_error(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asynctracker.cli import main

    monkeypatch.setitem(sys.modules, "jsonschema", None)  # as if not installed
    with pytest.raises(RuntimeError, match=r"asynctracker\[collector\]"):
        Collector(iglu=registry)
    assert main(["collector", "--port", "0", "--iglu", str(registry)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install 'asynctracker[collector]'" in err
