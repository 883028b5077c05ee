"""``Tracker(before_track=[...])``: hooks that see, change or drop each event before it is
stored (personal-data redaction), and what happens when one misbehaves."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

import pytest
from event_support import CLICK, CTX, decoded, kept_tracker, rows
from iglu import check_event

import asynctracker as at
from asynctracker.collector import Collector

SIGNUP = "iglu:com.acme/signup/jsonschema/1-0-0"
PERSON = "iglu:com.acme/person/jsonschema/1-0-0"


def redact(event: at.TrackedEvent) -> None:
    """What a user writes: no IP, a hashed user id, no e-mail in data, no person entity."""
    event.fields.pop("ip", None)
    if "uid" in event.fields:
        event.fields["uid"] = hashlib.sha256(event.fields["uid"].encode()).hexdigest()
    described = event.self_describing
    if described is not None and isinstance(described.data, dict):
        described.data.pop("email", None)
    event.contexts = [entity for entity in event.contexts if entity.schema != PERSON]


SUBJECT = at.Subject().set_user_id("ada").set_ip_address("203.0.113.9").set_lang("en")
EVENT = at.SelfDescribing(
    at.SelfDescribingJson(SIGNUP, {"email": "ada@example.com", "plan": "pro"}),
    context=[at.SelfDescribingJson(PERSON, {"name": "Ada"}), CTX],
)


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw"])
async def test_a_hook_redacts_fields_data_and_contexts_before_anything_is_stored(
    base64_encode: bool,
) -> None:
    async with kept_tracker(
        before_track=[redact], subject=SUBJECT, base64_encode=base64_encode
    ) as (tracker, [storage]):
        eid = await tracker.track(EVENT)
        [raw] = await rows(storage)
        [event] = await decoded(storage)
    check_event(raw)
    assert ("ue_px" in raw) is base64_encode
    assert event["eid"] == eid
    assert "ip" not in event
    assert event["uid"] == hashlib.sha256(b"ada").hexdigest()
    assert event["lang"] == "en"
    assert event["unstruct_event"] == {"schema": SIGNUP, "data": {"plan": "pro"}}
    assert event["contexts"] == [CTX.to_dict()]


async def test_hooks_run_in_order_on_every_kind_of_call() -> None:
    seen: list[tuple[str, str]] = []

    def first(event: at.TrackedEvent) -> None:
        seen.append(("first", event.event_type))
        event.fields["page"] = "set by first"

    def second(event: at.TrackedEvent) -> None:
        seen.append(("second", event.fields.get("page", "")))

    async with kept_tracker(before_track=[first, second]) as (tracker, _):
        await tracker.track(at.PageView("https://a/"))
        await tracker.track_struct_event("c", "a")
        await tracker.track_ecommerce_transaction("o", 1, items=[at.EcommerceItem("s", 1)])
    assert seen == [
        ("first", "pv"),
        ("second", "set by first"),
        ("first", "se"),
        ("second", "set by first"),
        ("first", "tr"),
        ("second", "set by first"),
        ("first", "ti"),
        ("second", "set by first"),
    ]


async def test_a_dropped_event_is_not_stored_and_later_hooks_do_not_see_it() -> None:
    later: list[str] = []

    def drop_pings_and_items(event: at.TrackedEvent) -> None:
        if event.event_type in ("pp", "ti"):
            event.drop()

    async with kept_tracker(before_track=[drop_pings_and_items, later.append]) as (
        tracker,
        [storage],
    ):
        assert await tracker.track(at.PagePing("https://a/"))
        await tracker.track(at.PageView("https://a/"))
        await tracker.track_ecommerce_transaction("o", 1, items=[at.EcommerceItem("s", 1)])
        assert [event["e"] for event in await rows(storage)] == ["pv", "tr"]
    assert [event.event_type for event in later] == ["pv", "tr"]


async def test_every_emitter_stores_the_changed_event() -> None:
    async with kept_tracker(
        at.MemoryStorage(), at.MemoryStorage(), before_track=[redact], subject=SUBJECT
    ) as (tracker, storages):
        await tracker.track(EVENT)
        first, second = [await rows(storage) for storage in storages]
    assert first == second
    assert "ip" not in first[0]


async def test_a_hook_may_add_values_the_json_encoder_encodes() -> None:
    def stamp(event: at.TrackedEvent) -> None:
        event.contexts.append(
            at.SelfDescribingJson(PERSON, {"at": datetime(2024, 1, 1, tzinfo=timezone.utc)})
        )

    async with kept_tracker(before_track=[stamp], json_encoder=datetime.isoformat) as (
        tracker,
        [storage],
    ):
        await tracker.track(at.PageView("https://a/"))
        [event] = await decoded(storage)
    assert event["contexts"] == [{"schema": PERSON, "data": {"at": "2024-01-01T00:00:00+00:00"}}]


async def test_the_redacted_event_arrives_valid_at_a_real_collector(collector: Collector) -> None:
    emitter = at.Emitter(collector.url, storage=at.MemoryStorage())
    async with at.Tracker(emitter, before_track=[redact], subject=SUBJECT) as tracker:
        await tracker.track(EVENT)
        assert await tracker.flush(10) == 0
    [received] = await collector.wait_for_events(1)
    assert received.valid, received.errors
    assert "ip" not in received.payload
    assert received.decoded["unstruct_event"] == {"schema": SIGNUP, "data": {"plan": "pro"}}


# -- hooks that misbehave -----------------------------------------------------------------


def raises(event: at.TrackedEvent) -> None:
    raise KeyError("no such field")


def returns_something(event: at.TrackedEvent) -> Any:
    return event


class AsyncHook:
    async def __call__(self, event: at.TrackedEvent) -> None:
        return None


def changes_eid(event: at.TrackedEvent) -> None:
    event.fields["eid"] = "00000000-0000-4000-8000-000000000000"


def changes_type(event: at.TrackedEvent) -> None:
    event.fields["e"] = "se"


def sets_a_number(event: at.TrackedEvent) -> None:
    event.fields["uid"] = 7  # type: ignore[assignment]


def sets_encoded_json(event: at.TrackedEvent) -> None:
    event.fields["cx"] = "e30"


def spoils_data(event: at.TrackedEvent) -> None:
    assert event.self_describing is not None
    event.self_describing = at.SelfDescribingJson(CLICK.schema, {"ids": {1, 2}})


def spoils_contexts(event: at.TrackedEvent) -> None:
    event.contexts = [CTX.to_dict()]  # type: ignore[list-item]


BAD_HOOKS = [
    pytest.param(raises, "raises raised KeyError", id="raises"),
    pytest.param(returns_something, "returned TrackedEvent", id="returns-a-value"),
    pytest.param(AsyncHook(), "returned coroutine", id="async-callable"),
    pytest.param(changes_eid, r"\(e\) and id \(eid\) cannot change", id="changes-eid"),
    pytest.param(changes_type, r"\(e\) and id \(eid\) cannot change", id="changes-type"),
    pytest.param(sets_a_number, "field 'uid' must be a str", id="field-not-str"),
    pytest.param(sets_encoded_json, "change self_describing or contexts", id="sets-cx"),
    pytest.param(spoils_data, "not JSON-serialisable", id="data-not-json"),
    pytest.param(spoils_contexts, r"contexts\[0\] must be a SelfDescribingJson", id="ctx"),
]


@pytest.mark.parametrize(("hook", "message"), BAD_HOOKS)
async def test_a_misbehaving_hook_raises_a_typed_error_naming_it_and_nothing_is_stored(
    hook: Any, message: str
) -> None:
    async with kept_tracker(at.MemoryStorage(), at.MemoryStorage(), before_track=[hook]) as (
        tracker,
        storages,
    ):
        with pytest.raises(at.BeforeTrackError, match=message) as raised:
            await tracker.track(at.SelfDescribing(CLICK))
        assert isinstance(raised.value, RuntimeError)
        for storage in storages:
            assert await rows(storage) == []
    name = getattr(hook, "__qualname__", type(hook).__qualname__)
    assert name in str(raised.value) or "AsyncHook" in str(raised.value)


async def test_a_raising_hook_keeps_its_exception_as_the_cause() -> None:
    async with kept_tracker(before_track=[raises]) as (tracker, _):
        with pytest.raises(at.BeforeTrackError) as raised:
            await tracker.track_page_view("https://a/")
    assert isinstance(raised.value.__cause__, KeyError)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param(redact, "a list of callables", id="one-function-not-a-list"),
        pytest.param(["redact"], r"before_track\[0\] must be callable", id="not-callable"),
        pytest.param([AsyncHook().__call__], "is async", id="async-def"),
    ],
)
def test_bad_hooks_are_a_configuration_error(given: Any, message: str) -> None:
    with pytest.raises(at.ConfigurationError, match=message):
        at.Tracker(at.Emitter("collector.test", storage=at.MemoryStorage()), before_track=given)
