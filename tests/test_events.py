"""``await tracker.track(event)``: snowplow-tracker 1.x's event classes, what each stores,
how their arguments are checked, and how an event's subject merges with the tracker's."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from typing import Any

import pytest
from event_support import CLICK, CTX, PREVIOUS_ID, SCREEN_ID, TTM, decoded, kept_tracker, rows
from iglu import check_event

import asynctracker as at

MOBILE_SCREEN_VIEW = "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0"
PROTOCOL_KEYS = {"e", "tv", "p", "eid", "dtm", "tna", "aid"}


async def track_one(event: at.Event, **options: Any) -> dict[str, Any]:
    async with kept_tracker(**options) as (tracker, [storage]):
        eid = await tracker.track(event)
        [stored] = await rows(storage)
        check_event(stored)
        [event_dict] = await decoded(storage)
        assert event_dict["eid"] == eid
        return {key: value for key, value in event_dict.items() if key not in PROTOCOL_KEYS}


# -- what each class stores -------------------------------------------------------------


async def test_page_view_stores_url_title_and_referrer() -> None:
    own = await track_one(at.PageView("https://a.example/p", "Title é", "https://r.example/"))
    assert own == {"url": "https://a.example/p", "page": "Title é", "refr": "https://r.example/"}


async def test_page_ping_stores_its_offsets_and_zero_is_a_value() -> None:
    event = at.PagePing("https://a.example/", "T", None, min_x=0, max_x=1200, min_y=0, max_y=-3)
    own = await track_one(event)
    assert own == {
        "url": "https://a.example/",
        "page": "T",
        "pp_mix": "0",
        "pp_max": "1200",
        "pp_miy": "0",
        "pp_may": "-3",
    }


@pytest.mark.parametrize(("value", "sent"), [(0, "0"), (0.0, "0.0"), (2.5, "2.5"), (-7, "-7")])
async def test_structured_event_stores_its_fields_and_zero_is_a_value(
    value: float, sent: str
) -> None:
    own = await track_one(at.StructuredEvent("shop", "add", "sku-1", "colour", value))
    assert own == {"se_ca": "shop", "se_ac": "add", "se_la": "sku-1", "se_pr": "colour"} | {
        "se_va": sent
    }


async def test_self_describing_stores_its_schema_and_data() -> None:
    own = await track_one(at.SelfDescribing(CLICK))
    assert own == {"unstruct_event": CLICK.to_dict()}


async def test_screen_view_sends_the_mobile_schema_with_snowplow_trackers_keys() -> None:
    event = at.ScreenView(
        id_=SCREEN_ID,
        name="home",
        type="feed",
        previous_name="login",
        previous_id=PREVIOUS_ID,
        previous_type="form",
        transition_type="push",
    )
    own = await track_one(event)
    assert own == {
        "unstruct_event": {
            "schema": MOBILE_SCREEN_VIEW,
            "data": {
                "id": SCREEN_ID,
                "name": "home",
                "type": "feed",
                "previousName": "login",
                "previousId": PREVIOUS_ID,
                "previousType": "form",
                "transitionType": "push",
            },
        }
    }


async def test_screen_view_leaves_out_what_was_not_given() -> None:
    own = await track_one(at.ScreenView(SCREEN_ID, "home"))
    assert own["unstruct_event"]["data"] == {"id": SCREEN_ID, "name": "home"}


async def test_screen_view_sends_its_ids_as_given() -> None:
    own = await track_one(at.ScreenView(SCREEN_ID.upper(), "home"))
    assert own["unstruct_event"]["data"]["id"] == SCREEN_ID.upper()


async def test_track_returns_the_stored_event_id_and_each_track_makes_a_new_one() -> None:
    async with kept_tracker() as (tracker, [storage]):
        event = at.PageView("https://a.example/")
        ids = [await tracker.track(event), await tracker.track(event)]
        assert [row["eid"] for row in await rows(storage)] == ids
        assert len(set(ids)) == 2


async def test_context_and_true_timestamp_are_sent_as_snowplow_tracker_sends_them() -> None:
    event = at.PageView("https://a.example/", context=[CTX, CLICK], true_timestamp=TTM + 0.9)
    own = await track_one(event)
    assert own["ttm"] == str(TTM)  # whole milliseconds, as snowplow-tracker's int()
    assert own["contexts"] == [CTX.to_dict(), CLICK.to_dict()]


@pytest.mark.parametrize(
    "true_timestamp",
    [TTM, float(TTM), datetime.fromtimestamp(TTM / 1000, tz=timezone.utc)],
    ids=["int", "float", "datetime"],
)
async def test_true_timestamp_takes_int_float_or_aware_datetime(true_timestamp: Any) -> None:
    own = await track_one(at.StructuredEvent("c", "a", true_timestamp=true_timestamp))
    assert own["ttm"] == str(TTM)


async def test_the_tracker_contexts_and_providers_follow_the_events_own() -> None:
    static = at.SelfDescribingJson("iglu:com.acme/service/jsonschema/1-0-0", {"name": "shop"})
    provided = at.SelfDescribingJson("iglu:com.acme/request/jsonschema/1-0-0", {"id": "r"})
    own = await track_one(
        at.SelfDescribing(CLICK, context=[CTX]),
        contexts=[static],
        context_providers=[lambda: provided],
    )
    assert own["contexts"] == [CTX.to_dict(), static.to_dict(), provided.to_dict()]


# -- argument checks ----------------------------------------------------------------------

BAD_EVENTS = [
    pytest.param(lambda: at.PageView(""), "page_url", id="page-view-empty-url"),
    pytest.param(lambda: at.PageView(None), "page_url", id="page-view-no-url"),  # type: ignore[arg-type]
    pytest.param(lambda: at.PageView("https://a/", 5), "page_title", id="title-not-str"),  # type: ignore[arg-type]
    pytest.param(lambda: at.PageView("https://a/\ud800"), "page_url", id="url-lone-surrogate"),
    pytest.param(lambda: at.PagePing("https://a/", min_x=1.5), "min_x", id="ping-float-offset"),  # type: ignore[arg-type]
    pytest.param(lambda: at.PagePing("https://a/", max_y=True), "max_y", id="ping-bool-offset"),
    pytest.param(lambda: at.PagePing("https://a/", max_x=2**31), "max_x", id="ping-offset-int32"),
    pytest.param(lambda: at.StructuredEvent("", "a"), "category", id="se-no-category"),
    pytest.param(lambda: at.StructuredEvent("c", None), "action", id="se-no-action"),  # type: ignore[arg-type]
    pytest.param(lambda: at.StructuredEvent("c", "a", value=math.nan), "value", id="se-nan"),
    pytest.param(lambda: at.StructuredEvent("c", "a", value="1"), "value", id="se-str-value"),  # type: ignore[arg-type]
    pytest.param(lambda: at.SelfDescribing(CLICK.to_dict()), "event_json", id="sd-dict"),  # type: ignore[arg-type]
    pytest.param(lambda: at.ScreenView("not-a-uuid", "home"), "id_", id="screen-id-not-uuid"),
    pytest.param(lambda: at.ScreenView(SCREEN_ID, ""), "name", id="screen-no-name"),
    pytest.param(
        lambda: at.ScreenView(SCREEN_ID, "a", previous_id="x"), "previous_id", id="screen-prev-id"
    ),
    pytest.param(
        lambda: at.PageView("https://a/", context=CTX),  # type: ignore[arg-type]
        "context must be a list",
        id="context-not-a-list",
    ),
    pytest.param(
        lambda: at.PageView("https://a/", context=[CTX.to_dict()]),  # type: ignore[list-item]
        r"context\[0\]",
        id="context-entry-not-sdj",
    ),
    pytest.param(
        lambda: at.PageView("https://a/", event_subject={"uid": "u"}),  # type: ignore[arg-type]
        "event_subject",
        id="event-subject-not-subject",
    ),
    pytest.param(
        lambda: at.PageView("https://a/", true_timestamp=1_700_000_000),
        "looks like seconds",
        id="ttm-seconds",
    ),
    pytest.param(
        lambda: at.PageView("https://a/", true_timestamp=math.inf), "finite", id="ttm-inf"
    ),
    pytest.param(
        lambda: at.PageView("https://a/", true_timestamp=datetime(2024, 1, 1)),
        "timezone-aware",
        id="ttm-naive",
    ),
    pytest.param(
        lambda: at.PageView("https://a/", true_timestamp="1700000000000"),  # type: ignore[arg-type]
        "true_timestamp",
        id="ttm-str",
    ),
]


@pytest.mark.parametrize(("make", "named"), BAD_EVENTS)
def test_bad_arguments_raise_a_typed_error_naming_them_when_the_event_is_made(
    make: Any, named: str
) -> None:
    with pytest.raises(at.InvalidEventError, match=named) as raised:
        make()
    assert isinstance(raised.value, ValueError)


async def test_track_refuses_what_is_not_an_event_and_stores_nothing() -> None:
    async with kept_tracker() as (tracker, [storage]):
        with pytest.raises(at.InvalidEventError, match="PageView"):
            await tracker.track(CLICK)  # type: ignore[arg-type]
        assert await rows(storage) == []


async def test_a_context_list_spoiled_after_the_event_was_made_is_refused_at_track() -> None:
    context: list[at.SelfDescribingJson] = [CTX]
    event = at.PageView("https://a/", context=context)
    context.append("junk")  # type: ignore[arg-type]
    async with kept_tracker() as (tracker, [storage]):
        with pytest.raises(at.InvalidEventError, match=r"contexts\[1\]"):
            await tracker.track(event)
        assert await rows(storage) == []


def test_events_are_immutable_and_replace_checks_again() -> None:
    event = at.PageView("https://a/", "T")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.page_title = "U"  # type: ignore[misc]
    assert dataclasses.replace(event, page_title="U").page_title == "U"
    with pytest.raises(at.InvalidEventError, match="page_url"):
        dataclasses.replace(event, page_url="")


def test_events_compare_by_value() -> None:
    assert at.StructuredEvent("c", "a", value=1) == at.StructuredEvent("c", "a", value=1)
    assert at.StructuredEvent("c", "a", value=1) != at.StructuredEvent("c", "a", value=2)
