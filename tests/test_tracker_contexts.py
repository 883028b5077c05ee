"""Tracker-wide contexts and the request's Subject: what every event carries without asking.

A tracker's static ``contexts`` and its ``context_providers`` (sync or async, asked once
per call) are added after the call's own contexts; a provider that fails makes the call
raise ContextProviderError naming it, and nothing is stored. The Subject bound with
``bind_subject`` is used when the call passes none: the call's ``subject=`` wins, then the
bound one, then the tracker's.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from iglu import check_received

import asynctracker as at
from asynctracker.collector import Collector

SERVICE = at.SelfDescribingJson("iglu:com.acme/service/jsonschema/1-0-0", {"name": "shop"})
DEPLOY = at.SelfDescribingJson("iglu:com.acme/deployment/jsonschema/1-0-0", {"env": "prod"})
OWN = at.SelfDescribingJson("iglu:com.acme/own/jsonschema/1-0-0", {"x": 1})
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_context() -> at.SelfDescribingJson | None:
    """A sync provider: the current request id, if there is one."""
    request_id = REQUEST_ID.get()
    if request_id is None:
        return None
    return at.SelfDescribingJson("iglu:com.acme/request/jsonschema/1-0-0", {"id": request_id})


async def flags_context() -> list[at.SelfDescribingJson]:
    """An async provider returning several entities."""
    await asyncio.sleep(0)
    return [
        at.SelfDescribingJson("iglu:com.acme/flag/jsonschema/1-0-0", {"name": "a"}),
        at.SelfDescribingJson("iglu:com.acme/flag/jsonschema/1-0-0", {"name": "b"}),
    ]


class Made:
    """Trackers on MemoryStorage whose collector answers 500, so every event stays stored."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.trackers: list[at.Tracker] = []

    async def __call__(self, **options: Any) -> at.Tracker:
        emitter = at.Emitter(
            "collector.test",
            storage=at.MemoryStorage(),
            http_client=self.client,
            retry=at.RetryPolicy(auto_retry=False),
        )
        tracker = at.Tracker(emitter, **options)
        await tracker.emitter.open()
        self.trackers.append(tracker)
        return tracker


@pytest.fixture
async def make(refusing_client: httpx.AsyncClient) -> AsyncIterator[Made]:
    made = Made(refusing_client)
    yield made
    for tracker in made.trackers:
        await tracker.aclose()


async def stored(tracker: at.Tracker) -> list[dict[str, str]]:
    return [row.event for row in await tracker.emitter.storage.get_all_event_rows()]


def entities(event: dict[str, str]) -> list[dict[str, Any]]:
    if "cx" in event:
        text = base64.urlsafe_b64decode(event["cx"]).decode("utf-8")
    elif "co" in event:
        text = event["co"]
    else:
        return []
    found: list[dict[str, Any]] = json.loads(text)["data"]
    return found


def schemas(event: dict[str, str]) -> list[str]:
    return [entity["schema"].split("/")[1] for entity in entities(event)]


EVERY_CALL: dict[str, Callable[[at.Tracker], Any]] = {
    "page_view": lambda t: t.track_page_view("https://a/", contexts=[OWN]),
    "struct": lambda t: t.track_struct_event("c", "a", contexts=[OWN]),
    "self_describing": lambda t: t.track_self_describing_event(OWN, contexts=[OWN]),
    "screen_view": lambda t: t.track_screen_view(name="home", contexts=[OWN]),
    "timing": lambda t: t.track_timing("c", "v", 5, contexts=[OWN]),
    "transaction": lambda t: t.track_ecommerce_transaction(
        "o", 9, items=[at.EcommerceItem(sku="s", price=9)], contexts=[OWN]
    ),
}


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw-json"])
@pytest.mark.parametrize("kind", list(EVERY_CALL))
async def test_static_contexts_and_providers_follow_the_calls_own_contexts(
    make: Made, kind: str, base64_encode: bool
) -> None:
    tracker = await make(
        contexts=[SERVICE, DEPLOY],
        context_providers=[request_context, flags_context],
        base64_encode=base64_encode,
    )
    token = REQUEST_ID.set("req-1")
    try:
        await EVERY_CALL[kind](tracker)
    finally:
        REQUEST_ID.reset(token)
    events = await stored(tracker)
    assert events
    for event in events:
        assert schemas(event) == ["own", "service", "deployment", "request", "flag", "flag"]
        assert entities(event)[3]["data"] == {"id": "req-1"}


async def test_tracker_contexts_alone_give_every_event_a_contexts_field(make: Made) -> None:
    tracker = await make(contexts=[SERVICE])
    await tracker.track_struct_event("c", "a")
    await tracker.track_page_view("https://a/", contexts=[])
    assert [schemas(event) for event in await stored(tracker)] == [["service"], ["service"]]


async def test_static_contexts_follow_a_change_of_encoding(make: Made) -> None:
    tracker = await make(contexts=[SERVICE])
    await tracker.track_struct_event("c", "a")
    tracker.base64_encode = False
    await tracker.track_struct_event("c", "a")
    first, second = await stored(tracker)
    assert ("cx" in first, "co" in second) == (True, True)
    assert entities(first) == entities(second) == [SERVICE.to_dict()]


async def test_static_contexts_are_written_when_the_tracker_is_made(make: Made) -> None:
    """Entities that change belong in a provider: a static one is encoded once."""
    entity = at.SelfDescribingJson("iglu:com.acme/build/jsonschema/1-0-0", {"sha": "a1"})
    tracker = await make(contexts=[entity])
    assert isinstance(entity.data, dict)
    entity.data["sha"] = "b2"
    await tracker.track_struct_event("c", "a")
    [event] = await stored(tracker)
    assert entities(event)[0]["data"] == {"sha": "a1"}


async def test_providers_are_asked_once_per_call_and_may_give_nothing(make: Made) -> None:
    asked: list[int] = []

    def counting() -> None:
        asked.append(1)

    tracker = await make(context_providers=[counting, request_context])
    await tracker.track_page_view("https://a/")
    await tracker.track_ecommerce_transaction(
        "o", 2, items=[at.EcommerceItem(sku="s", price=1), at.EcommerceItem(sku="t", price=1)]
    )
    assert len(asked) == 2
    assert [("cx" in event or "co" in event) for event in await stored(tracker)] == [False] * 4


def broken_provider() -> at.SelfDescribingJson:
    raise LookupError("no request here")


async def slow_broken_provider() -> at.SelfDescribingJson:
    await asyncio.sleep(0)
    raise KeyError("user")


@pytest.mark.parametrize(
    ("provider", "named", "cause"),
    [
        pytest.param(broken_provider, "broken_provider raised LookupError", LookupError, id="sync"),
        pytest.param(slow_broken_provider, "slow_broken_provider", KeyError, id="async"),
        pytest.param(lambda: {"id": 1}, "must return a SelfDescribingJson", None, id="a-dict"),
        pytest.param(lambda: [SERVICE, "x"], "list holding SelfDescribingJson, str", None, id="l"),
        pytest.param(lambda: "iglu:x", "got str", None, id="a-str"),
    ],
)
async def test_a_failing_provider_fails_the_call_naming_it_and_stores_nothing(
    make: Made, provider: Any, named: str, cause: type[Exception] | None
) -> None:
    tracker = await make(contexts=[SERVICE], context_providers=[request_context, provider])
    # Another tracker on the same emitter queues a good event first.
    await at.Tracker(tracker.emitter).track_page_view("https://queued/")
    with pytest.raises(at.ContextProviderError, match=named) as raised:
        await tracker.track_struct_event("c", "a")
    assert isinstance(raised.value, RuntimeError)
    if cause is not None:
        assert isinstance(raised.value.__cause__, cause)
    with pytest.raises(at.ContextProviderError):
        await tracker.track_ecommerce_transaction("o", 1, items=[at.EcommerceItem("s", 1)])
    assert [event["url"] for event in await stored(tracker)] == ["https://queued/"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param({"contexts": SERVICE}, "contexts must be a list", id="one-not-a-list"),
        pytest.param({"contexts": [SERVICE, {"schema": "x"}]}, r"contexts\[1\]", id="a-dict"),
        pytest.param({"context_providers": [request_context, 3]}, r"providers\[1\]", id="int"),
        pytest.param({"context_providers": request_context}, "list of callables", id="bare"),
    ],
)
async def test_bad_tracker_contexts_are_refused_when_the_tracker_is_made(
    make: Made, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(at.ConfigurationError, match=named):
        await make(**options)


# -- the request's Subject --------------------------------------------------------------

TRACKER_SUBJECT = at.Subject(user_id="tracker")
BOUND = at.Subject(user_id="bound", ip_address="10.0.0.9")
CALL = at.Subject(user_id="call")


async def test_a_bound_subject_is_used_when_the_call_gives_none(make: Made) -> None:
    tracker = await make(subject=TRACKER_SUBJECT)
    await tracker.track_page_view("https://a/")
    with at.bind_subject(BOUND):
        await tracker.track_page_view("https://a/")
        await tracker.track_page_view("https://a/", subject=CALL)
        with at.bind_subject(None):
            await tracker.track_page_view("https://a/")
    await tracker.track_page_view("https://a/")
    assert [event["uid"] for event in await stored(tracker)] == [
        "tracker",
        "bound",
        "call",
        "tracker",
        "tracker",
    ]


async def test_each_concurrent_request_gets_its_own_bound_subject(make: Made) -> None:
    tracker = await make()

    async def handle(user: str) -> None:
        with at.bind_subject(at.Subject(user_id=user)):
            await asyncio.sleep(0)
            await tracker.track_struct_event("c", user)

    await asyncio.gather(*(handle(f"u{n}") for n in range(20)))
    events = await stored(tracker)
    assert len(events) == 20
    assert all(event["uid"] == event["se_ac"] for event in events)


async def test_contexts_and_bound_subject_arrive_at_a_real_collector(
    collector: Collector, db_path: Path
) -> None:
    emitter = at.Emitter(collector.url, db_name=db_path)
    async with at.Tracker(
        emitter, contexts=[SERVICE], context_providers=[request_context, flags_context]
    ) as tracker:
        with at.bind_subject(BOUND):
            token = REQUEST_ID.set("req-9")
            try:
                await tracker.track_struct_event("c", "a", contexts=[OWN])
            finally:
                REQUEST_ID.reset(token)
        assert await tracker.flush(10) == 0
    [received] = await collector.wait_for_events(1)
    check_received([received])
    assert received.payload["uid"] == "bound"
    assert received.payload["ip"] == "10.0.0.9"
    assert schemas(received.payload) == ["own", "service", "request", "flag", "flag"]
