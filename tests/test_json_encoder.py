"""``Tracker(json_encoder=...)``: self-describing data and contexts may hold values JSON
cannot encode (datetime, Decimal, UUID); the data is checked at the track call."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from event_support import decoded, kept_tracker, rows

import asynctracker as at
from asynctracker.collector import Collector

SCHEMA = "iglu:com.acme/order/jsonschema/1-0-0"
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
ORDER_ID = uuid.UUID("5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d")
RICH = {"when": WHEN, "total": Decimal("19.90"), "order": ORDER_ID, "tags": ["a"]}
PLAIN = {"when": "2024-05-01T12:30:00+00:00", "total": "19.90", "order": str(ORDER_ID)}


def encode(value: object) -> object:
    """The kind of encoder users write: ISO dates, exact decimals, UUID strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def rich(schema: str = SCHEMA) -> at.SelfDescribingJson:
    return at.SelfDescribingJson(schema, dict(RICH))


async def test_event_data_and_contexts_are_encoded_with_the_encoder() -> None:
    async with kept_tracker(json_encoder=encode) as (tracker, [storage]):
        await tracker.track(at.SelfDescribing(rich(), context=[rich()]))
        await tracker.track_self_describing_event(rich(), contexts=[rich()])
        events = await decoded(storage)
    expected = {"schema": SCHEMA, "data": {**PLAIN, "tags": ["a"]}}
    for event in events:
        assert event["unstruct_event"] == expected
        assert event["contexts"] == [expected]


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw"])
async def test_static_contexts_and_providers_are_encoded_with_it_too(base64_encode: bool) -> None:
    provided = at.SelfDescribingJson("iglu:com.acme/request/jsonschema/1-0-0", {"at": WHEN})
    async with kept_tracker(
        json_encoder=encode,
        base64_encode=base64_encode,
        contexts=[rich()],
        context_providers=[lambda: provided],
    ) as (tracker, [storage]):
        await tracker.track(at.PageView("https://a/"))
        [event] = await decoded(storage)
    assert event["contexts"] == [
        {"schema": SCHEMA, "data": {**PLAIN, "tags": ["a"]}},
        {"schema": provided.schema, "data": {"at": PLAIN["when"]}},
    ]


async def test_data_arrives_valid_at_a_real_collector(collector: Collector) -> None:
    emitter = at.Emitter(collector.url, storage=at.MemoryStorage())
    async with at.Tracker(emitter, json_encoder=encode) as tracker:
        await tracker.track(at.SelfDescribing(rich(), context=[rich()]))
        assert await tracker.flush(10) == 0
    [received] = await collector.wait_for_events(1)
    assert received.valid, received.errors
    assert received.decoded["unstruct_event"] == {
        "schema": SCHEMA,
        "data": {**PLAIN, "tags": ["a"]},
    }


UNENCODABLE = [
    pytest.param(None, {"when": WHEN}, "not JSON-serialisable", id="no-encoder"),
    pytest.param(encode, {"ids": {1, 2}}, "cannot encode set", id="encoder-refuses"),
    pytest.param(lambda value: float("nan"), {"x": Decimal(1)}, "Out of range", id="encoder-nan"),
    pytest.param(lambda value: {}["key"], {"x": WHEN}, "json_encoder raised KeyError", id="raises"),
]


@pytest.mark.parametrize(("encoder", "data", "message"), UNENCODABLE)
async def test_data_nothing_can_encode_raises_at_the_call_and_stores_nothing(
    encoder: Any, data: dict[str, Any], message: str
) -> None:
    async with kept_tracker(json_encoder=encoder) as (tracker, [storage]):
        await tracker.track(at.PageView("https://queued/"))
        sdj = at.SelfDescribingJson(SCHEMA, data)
        calls = [
            lambda: tracker.track(at.SelfDescribing(sdj)),
            lambda: tracker.track(at.PageView("https://a/", context=[sdj])),
            lambda: tracker.track_self_describing_event(sdj),
            lambda: tracker.track_struct_event("c", "a", contexts=[sdj]),
        ]
        for call in calls:
            with pytest.raises(at.InvalidEventError, match=message) as raised:
                await call()
            assert isinstance(raised.value, ValueError)
        assert [event["url"] for event in await rows(storage)] == ["https://queued/"]


def test_a_static_context_nothing_can_encode_is_a_configuration_error() -> None:
    with pytest.raises(at.ConfigurationError, match=r"contexts\[0\]"):
        at.Tracker(at.Emitter("collector.test", storage=at.MemoryStorage()), contexts=[rich()])


def test_json_encoder_must_be_callable() -> None:
    with pytest.raises(at.ConfigurationError, match="json_encoder"):
        at.Tracker(
            at.Emitter("collector.test", storage=at.MemoryStorage()),
            json_encoder="iso",  # type: ignore[arg-type]
        )


def test_to_json_takes_the_encoder_too() -> None:
    assert rich().to_json(encode) == (
        '{"data":{"order":"5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d","tags":["a"],'
        '"total":"19.90","when":"2024-05-01T12:30:00+00:00"},"schema":"' + SCHEMA + '"}'
    )
    with pytest.raises(at.InvalidEventError):
        at.SelfDescribingJson(SCHEMA, {"x": math.inf}).to_json(encode)
