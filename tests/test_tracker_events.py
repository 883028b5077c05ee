"""What every ``track_*`` call stores, and how bad input is refused before anything is.

The emitter here talks to a respx router that answers 500 (the ``refusing_client``
fixture) and never retries on its own, so every stored event stays in the MemoryStorage
where the test can read it.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from iglu import check_event

import asynctracker as at

CTX = at.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"id": 7, "name": "ä"})
CLICK = at.SelfDescribingJson("iglu:com.acme/click/jsonschema/1-0-0", {"x": 1, "b": [True]})
UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COMMON_KEYS = {"e", "tv", "p", "eid", "dtm", "tna", "aid"}

Track = Callable[..., Awaitable[str]]


class KeepOnClose(at.MemoryStorage):
    """A MemoryStorage whose rows survive aclose, to count them after the tracker closed."""

    async def aclose(self) -> None:
        return None


class Harness:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.trackers: list[at.Tracker] = []

    def make(
        self,
        *,
        base64_encode: bool = True,
        subject: at.Subject | None = None,
        storage: at.MemoryStorage | None = None,
    ) -> tuple[at.Tracker, at.MemoryStorage]:
        storage = storage if storage is not None else at.MemoryStorage()
        emitter = at.Emitter(
            "collector.test",
            storage=storage,
            http_client=self.client,
            retry=at.RetryPolicy(auto_retry=False),
        )
        tracker = at.Tracker(
            emitter, namespace="ns", app_id="app", base64_encode=base64_encode, subject=subject
        )
        self.trackers.append(tracker)
        return tracker, storage


@pytest.fixture
async def harness(refusing_client: httpx.AsyncClient) -> AsyncIterator[Harness]:
    made = Harness(refusing_client)
    yield made
    for tracker in made.trackers:
        await tracker.aclose()


async def stored(storage: at.MemoryStorage) -> list[dict[str, str]]:
    return [row.event for row in await storage.get_all_event_rows()]


def decode(event: dict[str, str], encoded_key: str, raw_key: str) -> Any:
    if encoded_key in event:
        assert raw_key not in event
        text = base64.urlsafe_b64decode(event[encoded_key]).decode("utf-8")
    else:
        text = event[raw_key]
    return json.loads(text)


def assert_well_formed(event: dict[str, str]) -> None:
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.items()), event
    assert all(v != "" for v in event.values()), event
    assert "stm" not in event
    assert event["tv"] == f"asynctracker-{at.__version__}"
    assert event["p"] == "srv"
    assert event["tna"] == "ns"
    assert event["aid"] == "app"
    assert uuid.UUID(event["eid"]).version == 4
    assert event["dtm"].isdigit()
    check_event(event)


# -- one call per track_* -----------------------------------------------------------------

UE = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
SCREEN_VIEW = "iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema/1-0-0"
TIMING = "iglu:com.snowplowanalytics.snowplow/timing/jsonschema/1-0-0"

ALL_EVENTS: dict[str, tuple[Callable[..., Awaitable[str]], dict[str, str], object]] = {
    "page_view": (
        lambda t, **kw: t.track_page_view(
            page_url="https://acme.com/", page_title="Home", referrer="https://ref.com/", **kw
        ),
        {"e": "pv", "url": "https://acme.com/", "page": "Home", "refr": "https://ref.com/"},
        None,
    ),
    "struct_event": (
        lambda t, **kw: t.track_struct_event(
            category="shop", action="add", label="sku-1", property_="p", value=2.5, **kw
        ),
        {
            "e": "se",
            "se_ca": "shop",
            "se_ac": "add",
            "se_la": "sku-1",
            "se_pr": "p",
            "se_va": "2.5",
        },
        None,
    ),
    "self_describing": (
        lambda t, **kw: t.track_self_describing_event(CLICK, **kw),
        {"e": "ue"},
        {"schema": CLICK.schema, "data": {"x": 1, "b": [True]}},
    ),
    "screen_view": (
        lambda t, **kw: t.track_screen_view(
            name="home", id="2f1c6b0e-1b2a-4c3d-8e4f-5a6b7c8d9e0f", **kw
        ),
        {"e": "ue"},
        {
            "schema": SCREEN_VIEW,
            "data": {"name": "home", "id": "2f1c6b0e-1b2a-4c3d-8e4f-5a6b7c8d9e0f"},
        },
    ),
    "timing": (
        lambda t, **kw: t.track_timing(
            category="db", variable="query", timing=12, label="users", **kw
        ),
        {"e": "ue"},
        {
            "schema": TIMING,
            "data": {"category": "db", "variable": "query", "timing": 12, "label": "users"},
        },
    ),
    "transaction": (
        lambda t, **kw: t.track_ecommerce_transaction(
            order_id="o-1",
            total_value=99.9,
            tax_value=1,
            shipping=3.456,
            affiliation="web",
            city="Paris",
            state="IdF",
            country="FR",
            currency="EUR",
            **kw,
        ),
        {
            "e": "tr",
            "tr_id": "o-1",
            "tr_tt": "99.90",
            "tr_tx": "1.00",
            "tr_sh": "3.46",
            "tr_af": "web",
            "tr_ci": "Paris",
            "tr_st": "IdF",
            "tr_co": "FR",
            "tr_cu": "EUR",
        },
        None,
    ),
}
EVENT_IDS = list(ALL_EVENTS)
B64 = [pytest.param(True, id="base64"), pytest.param(False, id="raw-json")]


@pytest.mark.parametrize("base64_encode", B64)
@pytest.mark.parametrize("kind", EVENT_IDS)
async def test_track_stores_the_protocol_fields_of_the_event(
    harness: Harness, kind: str, base64_encode: bool
) -> None:
    call, fields, unstruct = ALL_EVENTS[kind]
    tracker, storage = harness.make(base64_encode=base64_encode)

    eid = await call(tracker)

    [event] = await stored(storage)
    assert_well_formed(event)
    assert event["eid"] == eid
    assert {k: event[k] for k in fields} == fields
    assert "ttm" not in event
    if unstruct is None:
        assert not {"ue_px", "ue_pr"} & set(event)
        assert set(event) == COMMON_KEYS | set(fields)
    else:
        key = "ue_px" if base64_encode else "ue_pr"
        assert set(event) == COMMON_KEYS | set(fields) | {key}
        assert decode(event, "ue_px", "ue_pr") == {"schema": UE, "data": unstruct}


@pytest.mark.parametrize("base64_encode", B64)
@pytest.mark.parametrize("kind", EVENT_IDS)
async def test_track_encodes_contexts(harness: Harness, kind: str, base64_encode: bool) -> None:
    call, _, _ = ALL_EVENTS[kind]
    tracker, storage = harness.make(base64_encode=base64_encode)
    other = at.SelfDescribingJson("iglu:com.acme/device/jsonschema/2-1-0", {"os": "linux"})

    await call(tracker, contexts=[CTX, other])

    [event] = await stored(storage)
    assert_well_formed(event)
    assert ("cx" in event) is base64_encode
    assert ("co" in event) is not base64_encode
    assert decode(event, "cx", "co") == {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
        "data": [CTX.to_dict(), other.to_dict()],
    }


@pytest.mark.parametrize("base64_encode", B64)
async def test_raw_json_is_compact_and_sorted(harness: Harness, base64_encode: bool) -> None:
    tracker, storage = harness.make(base64_encode=base64_encode)
    data = {"z": 1, "a": {"y": "é", "b": None}}
    await tracker.track_self_describing_event(
        at.SelfDescribingJson("iglu:com.acme/x/jsonschema/1-0-0", data), contexts=[CTX]
    )
    [event] = await stored(storage)
    expected_ue = (
        '{"data":{"data":{"a":{"b":null,"y":"é"},"z":1},'
        '"schema":"iglu:com.acme/x/jsonschema/1-0-0"},"schema":"' + UE + '"}'
    )
    if base64_encode:
        assert base64.urlsafe_b64decode(event["ue_px"]).decode() == expected_ue
    else:
        assert event["ue_pr"] == expected_ue


@pytest.mark.parametrize("kind", EVENT_IDS)
async def test_empty_contexts_add_no_key(harness: Harness, kind: str) -> None:
    call, _, _ = ALL_EVENTS[kind]
    tracker, storage = harness.make()
    await call(tracker, contexts=[])
    [event] = await stored(storage)
    assert not {"cx", "co"} & set(event)


@pytest.mark.parametrize(
    ("call", "present", "absent"),
    [
        pytest.param(
            lambda t: t.track_page_view(page_url="https://a/", page_title="", referrer=None),
            {"url"},
            {"page", "refr"},
            id="page_view",
        ),
        pytest.param(
            lambda t: t.track_struct_event(category="c", action="a", label="", value=None),
            {"se_ca", "se_ac"},
            {"se_la", "se_pr", "se_va"},
            id="struct_event",
        ),
        pytest.param(
            lambda t: t.track_ecommerce_transaction(order_id="o", total_value=0, currency=""),
            {"tr_id", "tr_tt"},
            {"tr_tx", "tr_sh", "tr_af", "tr_ci", "tr_st", "tr_co", "tr_cu"},
            id="transaction",
        ),
    ],
)
async def test_optional_fields_left_empty_are_not_stored(
    harness: Harness, call: Track, present: set[str], absent: set[str]
) -> None:
    tracker, storage = harness.make()
    await call(tracker)
    [event] = await stored(storage)
    assert present <= set(event)
    assert not absent & set(event)
    assert_well_formed(event)


async def test_screen_view_with_only_a_name_or_only_an_id(harness: Harness) -> None:
    tracker, storage = harness.make(base64_encode=False)
    await tracker.track_screen_view(name="home")
    await tracker.track_screen_view(id="s-1")
    first, second = await stored(storage)
    assert json.loads(first["ue_pr"])["data"]["data"] == {"name": "home"}
    assert json.loads(second["ue_pr"])["data"]["data"] == {"id": "s-1"}


async def test_timing_without_label_omits_it(harness: Harness) -> None:
    tracker, storage = harness.make(base64_encode=False)
    await tracker.track_timing(category="db", variable="q", timing=0)
    [event] = await stored(storage)
    assert json.loads(event["ue_pr"])["data"]["data"] == {
        "category": "db",
        "variable": "q",
        "timing": 0,
    }
    check_event(event)


# -- ids and timestamps -------------------------------------------------------------------


@pytest.mark.parametrize("kind", EVENT_IDS)
async def test_event_id_is_a_fresh_uuid4_returned_by_the_call(harness: Harness, kind: str) -> None:
    call, _, _ = ALL_EVENTS[kind]
    tracker, storage = harness.make()
    ids = [await call(tracker) for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(eid).version == 4 for eid in ids)
    assert [event["eid"] for event in await stored(storage)] == ids


@pytest.mark.parametrize("kind", EVENT_IDS)
async def test_given_event_id_is_used_and_returned(harness: Harness, kind: str) -> None:
    call, _, _ = ALL_EVENTS[kind]
    tracker, storage = harness.make()
    given = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
    assert await call(tracker, event_id=given) == given
    [event] = await stored(storage)
    assert event["eid"] == given


async def test_dtm_defaults_to_now(harness: Harness) -> None:
    tracker, storage = harness.make()
    before = int(time.time() * 1000)
    await tracker.track_page_view(page_url="https://a/")
    after = int(time.time() * 1000)
    [event] = await stored(storage)
    assert before <= int(event["dtm"]) <= after


MS = 1_700_000_000_123
TIMESTAMPS = [
    pytest.param(MS, str(MS), id="int-ms"),
    pytest.param(EPOCH + timedelta(milliseconds=MS), str(MS), id="aware-utc"),
    pytest.param(
        (EPOCH + timedelta(milliseconds=MS)).astimezone(timezone(timedelta(hours=-7, minutes=-30))),
        str(MS),
        id="aware-other-offset",
    ),
    pytest.param(
        EPOCH + timedelta(milliseconds=1_089_774_673_702),
        "1089774673702",
        id="aware-float-trap",
    ),
    pytest.param(
        EPOCH + timedelta(milliseconds=MS, microseconds=999), str(MS), id="aware-sub-ms-floored"
    ),
]


@pytest.mark.parametrize(("value", "expected"), TIMESTAMPS)
@pytest.mark.parametrize("kind", ["page_view", "self_describing", "transaction"])
async def test_timestamp_and_true_timestamp_become_epoch_ms(
    harness: Harness, kind: str, value: int | datetime, expected: str
) -> None:
    call, _, _ = ALL_EVENTS[kind]
    tracker, storage = harness.make()
    await call(tracker, timestamp=value, true_timestamp=value)
    [event] = await stored(storage)
    assert event["dtm"] == expected
    assert event["ttm"] == expected


async def test_aware_datetimes_convert_exactly_to_the_millisecond(harness: Harness) -> None:
    tracker, storage = harness.make()
    instants = [1_000_000_000_000 + step * 7_919_113 for step in range(400)]
    for ms in instants:
        await tracker.track_page_view(
            page_url="https://a/", timestamp=EPOCH + timedelta(milliseconds=ms)
        )
    assert [int(event["dtm"]) for event in await stored(storage)] == instants


# -- subjects -----------------------------------------------------------------------------


async def test_tracker_subject_fields_are_added(harness: Harness) -> None:
    tracker, storage = harness.make(subject=at.Subject(user_id="u-1", language="en"))
    await tracker.track_page_view(page_url="https://a/")
    [event] = await stored(storage)
    assert event["uid"] == "u-1"
    assert event["lang"] == "en"
    assert_well_formed(event)


@pytest.mark.parametrize("kind", EVENT_IDS)
async def test_event_subject_replaces_the_tracker_subject(harness: Harness, kind: str) -> None:
    call, _, _ = ALL_EVENTS[kind]
    tracker, storage = harness.make(subject=at.Subject(user_id="u-1", language="en"))
    await call(tracker, subject=at.Subject(user_id="u-2", timezone="UTC"))
    [event] = await stored(storage)
    assert event["uid"] == "u-2"
    assert event["tz"] == "UTC"
    assert "lang" not in event


async def test_subject_changes_after_tracking_do_not_alter_stored_events(
    harness: Harness,
) -> None:
    subject = at.Subject(user_id="u-1")
    tracker, storage = harness.make(subject=subject)
    await tracker.track_page_view(page_url="https://a/")
    subject.set_user_id("u-2")
    await tracker.track_page_view(page_url="https://a/")
    assert [event["uid"] for event in await stored(storage)] == ["u-1", "u-2"]


# -- ecommerce ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="zero"),
        pytest.param(10, id="int"),
        pytest.param(99.9, id="one-decimal"),
        pytest.param(49.955, id="rounding"),
        pytest.param(1e7 + 0.1, id="large"),
        pytest.param(-5.5, id="refund"),
    ],
)
async def test_money_is_formatted_with_two_decimals(harness: Harness, value: float) -> None:
    tracker, storage = harness.make()
    await tracker.track_ecommerce_transaction(
        order_id="o",
        total_value=value,
        tax_value=value,
        shipping=value,
        items=[at.EcommerceItem(sku="s", price=value)],
    )
    tr, ti = await stored(storage)
    assert tr["tr_tt"] == tr["tr_tx"] == tr["tr_sh"] == f"{value:.2f}"
    assert ti["ti_pr"] == f"{value:.2f}"


@pytest.mark.parametrize("base64_encode", B64)
async def test_transaction_stores_one_item_event_per_item(
    harness: Harness, base64_encode: bool
) -> None:
    tracker, storage = harness.make(base64_encode=base64_encode, subject=at.Subject(user_id="u-1"))
    item_id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    items = [
        at.EcommerceItem(sku="sku-1", price=49.95, quantity=2, name="Mug", category="kitchen"),
        at.EcommerceItem(sku="sku-2", price=5, event_id=item_id),
    ]
    eid = await tracker.track_ecommerce_transaction(
        order_id="o-1",
        total_value=104.9,
        currency="EUR",
        items=items,
        contexts=[CTX],
        timestamp=MS,
    )
    tr, first, second = await stored(storage)
    assert tr["e"] == "tr"
    assert tr["eid"] == eid
    assert first == {
        **{k: first[k] for k in ("tv", "p", "tna", "aid", "eid", "cx" if base64_encode else "co")},
        "e": "ti",
        "dtm": str(MS),
        "uid": "u-1",
        "ti_id": "o-1",
        "ti_sk": "sku-1",
        "ti_nm": "Mug",
        "ti_ca": "kitchen",
        "ti_pr": "49.95",
        "ti_qu": "2",
        "ti_cu": "EUR",
    }
    assert second["ti_sk"] == "sku-2"
    assert second["ti_qu"] == "1"
    assert second["ti_pr"] == "5.00"
    assert second["ti_id"] == "o-1"
    assert second["ti_cu"] == "EUR"
    assert second["eid"] == item_id
    assert not {"ti_nm", "ti_ca"} & set(second)
    assert len({tr["eid"], first["eid"], second["eid"]}) == 3
    for event in (tr, first, second):
        assert_well_formed(event)


async def test_transaction_without_currency_sends_none_on_items(harness: Harness) -> None:
    tracker, storage = harness.make()
    await tracker.track_ecommerce_transaction(
        order_id="o", total_value=1, items=[at.EcommerceItem(sku="s", price=1)]
    )
    tr, ti = await stored(storage)
    assert "tr_cu" not in tr
    assert "ti_cu" not in ti


# -- bad input ----------------------------------------------------------------------------

BAD_SCHEMA = "iglu:com.acme/click/1-0-0"
NAIVE = datetime(2024, 1, 1, 12, 0, 0)


def _bad_item_transaction(t: at.Tracker) -> Awaitable[str]:
    good = at.EcommerceItem(sku="ok", price=1)
    return t.track_ecommerce_transaction(
        order_id="o",
        total_value=1,
        items=[good, {"sku": "x", "price": 1}],  # type: ignore[list-item]
    )


BAD_CALLS = [
    pytest.param(lambda t: t.track_page_view(page_url=""), id="page_view-empty-url"),
    pytest.param(lambda t: t.track_page_view(page_url=None), id="page_view-no-url"),
    pytest.param(lambda t: t.track_page_view(page_url=42), id="page_view-int-url"),
    pytest.param(lambda t: t.track_struct_event(category="", action="a"), id="struct-no-category"),
    pytest.param(lambda t: t.track_struct_event(category="c", action=None), id="struct-no-action"),
    pytest.param(
        lambda t: t.track_struct_event(category="c", action="a", value=math.nan), id="struct-nan"
    ),
    pytest.param(
        lambda t: t.track_struct_event(category="c", action="a", value=math.inf), id="struct-inf"
    ),
    pytest.param(
        lambda t: t.track_struct_event(category="c", action="a", value="1"), id="struct-str-value"
    ),
    pytest.param(lambda t: t.track_screen_view(), id="screen_view-no-name-no-id"),
    pytest.param(lambda t: t.track_screen_view(name="", id=""), id="screen_view-empty"),
    pytest.param(
        lambda t: t.track_self_describing_event(at.SelfDescribingJson(BAD_SCHEMA, {})),
        id="bad-schema",
    ),
    pytest.param(
        lambda t: t.track_self_describing_event({"schema": CLICK.schema, "data": {}}),
        id="event-not-self-describing-json",
    ),
    pytest.param(
        lambda t: t.track_self_describing_event(
            at.SelfDescribingJson(CLICK.schema, {"o": object()})
        ),
        id="non-serialisable-data",
    ),
    pytest.param(
        lambda t: t.track_self_describing_event(
            at.SelfDescribingJson(CLICK.schema, {"x": math.nan})
        ),
        id="nan-in-data",
    ),
    pytest.param(
        lambda t: t.track_page_view(page_url="https://a/", contexts=[CTX.to_dict()]),
        id="context-not-self-describing-json",
    ),
    pytest.param(
        lambda t: t.track_page_view(page_url="https://a/", contexts=CTX), id="contexts-not-a-list"
    ),
    pytest.param(
        lambda t: t.track_page_view(
            page_url="https://a/",
            contexts=[at.SelfDescribingJson("iglu:com.acme/c/jsonschema/1", {})],
        ),
        id="context-bad-schema",
    ),
    pytest.param(
        lambda t: t.track_timing(category="c", variable="v", timing=1.5), id="timing-float"
    ),
    pytest.param(
        lambda t: t.track_timing(category="c", variable="v", timing=True), id="timing-bool"
    ),
    pytest.param(lambda t: t.track_timing(category="", variable="v", timing=1), id="timing-no-cat"),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(order_id="", total_value=1), id="tr-no-order-id"
    ),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(order_id=None, total_value=1), id="tr-none-order"
    ),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(order_id="o", total_value=math.nan), id="tr-nan"
    ),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(order_id="o", total_value=1, tax_value=math.inf),
        id="tr-inf-tax",
    ),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(
            order_id="o", total_value=1, items=[at.EcommerceItem(sku="", price=1)]
        ),
        id="item-no-sku",
    ),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(
            order_id="o", total_value=1, items=[at.EcommerceItem(sku="s", price=math.nan)]
        ),
        id="item-nan-price",
    ),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(
            order_id="o", total_value=1, items=[at.EcommerceItem(sku="s", price=1, quantity=1.5)]
        ),
        id="item-float-quantity",
    ),
    pytest.param(_bad_item_transaction, id="transaction-with-one-invalid-item"),
    pytest.param(
        lambda t: t.track_page_view(page_url="https://a/", timestamp=NAIVE), id="naive-timestamp"
    ),
    pytest.param(
        lambda t: t.track_page_view(page_url="https://a/", true_timestamp=NAIVE),
        id="naive-true-timestamp",
    ),
    pytest.param(lambda t: t.track_page_view(page_url="https://a/", timestamp=0), id="zero-ms"),
    pytest.param(lambda t: t.track_page_view(page_url="https://a/", timestamp=-1), id="negative"),
    pytest.param(lambda t: t.track_page_view(page_url="https://a/", timestamp=1.5e12), id="float"),
    pytest.param(lambda t: t.track_page_view(page_url="https://a/", timestamp=True), id="bool-ts"),
    pytest.param(lambda t: t.track_page_view(page_url="https://a/", timestamp="1"), id="str-ts"),
    pytest.param(
        lambda t: t.track_page_view(page_url="https://a/", event_id="not-a-uuid"), id="bad-eid"
    ),
    pytest.param(lambda t: t.track_page_view(page_url="https://a/", event_id=123), id="int-eid"),
    pytest.param(
        lambda t: t.track_ecommerce_transaction(
            order_id="o", total_value=1, items=[at.EcommerceItem(sku="s", price=1, event_id="x")]
        ),
        id="item-bad-eid",
    ),
    pytest.param(
        lambda t: t.track_page_view(page_url="https://a/", subject={"uid": "u"}), id="bad-subject"
    ),
]


async def _seed(tracker: at.Tracker) -> None:
    await tracker.track_page_view(page_url="https://seed/")
    await tracker.track_ecommerce_transaction(
        order_id="seed", total_value=1, items=[at.EcommerceItem(sku="s", price=1)]
    )


@pytest.mark.parametrize("call", BAD_CALLS)
async def test_bad_input_raises_invalid_event_error_and_stores_nothing(
    harness: Harness, call: Callable[[at.Tracker], Awaitable[str]]
) -> None:
    tracker, storage = harness.make()
    await _seed(tracker)
    before = await stored(storage)

    with pytest.raises(at.InvalidEventError) as info:
        await call(tracker)

    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, at.AsyncTrackerError)
    assert str(info.value)
    assert await stored(storage) == before


@pytest.mark.parametrize(
    "bad_item",
    [
        pytest.param(None, id="none"),
        pytest.param("sku-1", id="str"),
        pytest.param({"sku": "s", "price": 1}, id="dict"),
    ],
)
async def test_transaction_with_one_invalid_item_stores_nothing(
    harness: Harness, bad_item: object
) -> None:
    tracker, storage = harness.make()
    await _seed(tracker)
    before = await stored(storage)
    good = [at.EcommerceItem(sku="a", price=1), at.EcommerceItem(sku="b", price=2)]
    with pytest.raises(at.InvalidEventError):
        await tracker.track_ecommerce_transaction(
            order_id="o-2",
            total_value=3,
            items=[good[0], bad_item, good[1]],  # type: ignore[list-item]
        )
    after = await stored(storage)
    assert after == before
    assert not [e for e in after if e.get("tr_id") == "o-2" or e.get("ti_id") == "o-2"]


async def test_closed_tracker_raises_closed_error_and_leaves_rows(harness: Harness) -> None:
    storage = KeepOnClose()
    tracker, _ = harness.make(storage=storage)
    await _seed(tracker)
    before = await stored(storage)
    await tracker.aclose()

    for kind in EVENT_IDS:
        call, _, _ = ALL_EVENTS[kind]
        with pytest.raises(at.ClosedError) as info:
            await call(tracker)
        assert isinstance(info.value, RuntimeError)
        assert isinstance(info.value, at.AsyncTrackerError)
    with pytest.raises(at.ClosedError):
        await tracker.flush()
    assert await stored(storage) == before


BAD_EMITTER_OPTIONS = [
    pytest.param(("",), {}, id="empty-uri"),
    pytest.param(("   ",), {}, id="blank-uri"),
    pytest.param((None,), {}, id="none-uri"),
    pytest.param(("http://",), {}, id="scheme-without-host"),
    pytest.param(("ftp://collector.acme.com",), {}, id="ftp-scheme"),
    pytest.param(("ws://collector.acme.com",), {}, id="ws-scheme"),
    pytest.param(("://collector.acme.com",), {}, id="empty-scheme"),
    pytest.param(("collector acme.com",), {}, id="space-in-host"),
    pytest.param(("http://collector.acme.com:99999",), {}, id="port-out-of-range"),
    pytest.param(("collector.acme.com:0",), {}, id="port-zero"),
    pytest.param(("http://collector.acme.com:-1",), {}, id="port-negative"),
    pytest.param(("collector.acme.com:http",), {}, id="port-not-a-number"),
    pytest.param(("http://collector.acme.com/?x=1",), {}, id="query"),
    pytest.param(("http://collector.acme.com/#f",), {}, id="fragment"),
    pytest.param(("c.acme.com",), {"request_type": "PUT"}, id="request-type-put"),
    pytest.param(("c.acme.com",), {"request_type": "post"}, id="request-type-lowercase"),
    pytest.param(("c.acme.com",), {"protocol": "ftp"}, id="protocol-ftp"),
    pytest.param(("c.acme.com",), {"protocol": "HTTPS"}, id="protocol-uppercase"),
    pytest.param(("c.acme.com",), {"send_limit": 0}, id="send-limit-zero"),
    pytest.param(("c.acme.com",), {"send_limit": -5}, id="send-limit-negative"),
    pytest.param(("c.acme.com",), {"send_limit": 1.5}, id="send-limit-float"),
    pytest.param(("c.acme.com",), {"send_limit": True}, id="send-limit-bool"),
    pytest.param(("c.acme.com",), {"byte_limit_post": 0}, id="byte-limit-post-zero"),
    pytest.param(("c.acme.com",), {"byte_limit_get": -1}, id="byte-limit-get-negative"),
    pytest.param(("c.acme.com",), {"storage": object()}, id="storage-not-a-storage"),
    pytest.param(("c.acme.com",), {"callback": 3}, id="callback-not-callable"),
    pytest.param(("c.acme.com",), {"http_client": object()}, id="http-client-wrong-type"),
]


@pytest.mark.parametrize(("args", "kwargs"), BAD_EMITTER_OPTIONS)
async def test_bad_emitter_options_raise_configuration_error_and_touch_no_stored_rows(
    db_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    async with at.SQLiteStorage(db_path) as seeded:
        for n in range(3):
            await seeded.add_event_row({"e": "pv", "url": f"https://a/{n}"})

    with pytest.raises(at.ConfigurationError) as info:
        at.Emitter(*args, db_name=db_path, **kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, at.AsyncTrackerError)
    assert str(info.value)

    async with at.SQLiteStorage(db_path) as reopened:
        assert len(await reopened.get_all_event_rows()) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"platform": "desktop"}, id="platform"),
        pytest.param({"namespace": 1}, id="namespace"),
        pytest.param({"app_id": b"x"}, id="app-id"),
        pytest.param({"subject": {"uid": "u"}}, id="subject"),
    ],
)
async def test_bad_tracker_options_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    emitter = at.Emitter("c.acme.com", storage=at.MemoryStorage())
    with pytest.raises(at.ConfigurationError):
        at.Tracker(emitter, **kwargs)
    await emitter.aclose()


async def test_tracker_fields_changed_later_go_into_the_next_events(harness: Harness) -> None:
    tracker, storage = harness.make()
    await tracker.track_struct_event("c", "a")
    tracker.app_id = "renamed"
    tracker.namespace = None
    tracker.platform = "web"
    await tracker.track_struct_event("c", "a")
    first, second = await stored(storage)
    assert (first["aid"], first["tna"], first["p"]) == ("app", "ns", "srv")
    assert (second["aid"], second["p"]) == ("renamed", "web")
    assert "tna" not in second
    check_event(second)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("platform", "desktop", id="platform"),
        pytest.param("namespace", 1, id="namespace"),
        pytest.param("app_id", b"x", id="app-id"),
    ],
)
async def test_a_bad_tracker_field_set_later_is_refused_and_the_old_one_kept(
    harness: Harness, name: str, value: object
) -> None:
    tracker, storage = harness.make()
    before = getattr(tracker, name)
    with pytest.raises(at.ConfigurationError):
        setattr(tracker, name, value)
    assert getattr(tracker, name) == before
    await tracker.track_struct_event("c", "a")
    assert_well_formed((await stored(storage))[0])


async def test_tracker_needs_an_emitter() -> None:
    with pytest.raises(at.ConfigurationError):
        at.Tracker("https://c.acme.com")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "items",
    [pytest.param(None, id="none"), pytest.param(5, id="int"), pytest.param("sku", id="str")],
)
async def test_transaction_items_that_are_not_a_list_raise_invalid_event_error(
    harness: Harness, items: Any
) -> None:
    tracker, storage = harness.make()
    with pytest.raises(at.InvalidEventError):
        await tracker.track_ecommerce_transaction(order_id="o", total_value=1, items=items)
    assert await stored(storage) == []


async def test_transaction_items_from_a_generator_are_all_stored(harness: Harness) -> None:
    tracker, storage = harness.make()
    items = (at.EcommerceItem(sku=f"s-{n}", price=n) for n in range(3))
    await tracker.track_ecommerce_transaction(order_id="o", total_value=3, items=items)
    assert [(e["e"], e.get("ti_sk")) for e in await stored(storage)] == [
        ("tr", None),
        ("ti", "s-0"),
        ("ti", "s-1"),
        ("ti", "s-2"),
    ]
