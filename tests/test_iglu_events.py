"""Every event class validates against Iglu Central, stored and sent.

Each class is tracked through a real tracker (with subjects, contexts and a true
timestamp) into a real loopback collector that validates against the same schemas; the
stored payloads, the received events, their self-describing data and every context are
checked against ``/work/shared/iglu`` (see ``tests/iglu.py``: skipped, with the reason,
where no copy is found).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from event_support import PREVIOUS_ID, SCREEN_ID, TTM, kept_tracker, rows
from iglu import IGLU_DIR, IGLU_FOUND, IGLU_MISSING_REASON, check_event, check_received, validator

import asynctracker as at
from asynctracker.collector import Collector

pytestmark = pytest.mark.skipif(not IGLU_FOUND, reason=IGLU_MISSING_REASON)

SNOWPLOW = "iglu:com.snowplowanalytics.snowplow"
#: The schemas the event classes send, all of which must be in the copy.
SCHEMAS = [
    "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0",
    f"{SNOWPLOW}/link_click/jsonschema/1-0-1",
    f"{SNOWPLOW}/add_to_cart/jsonschema/1-0-0",
    f"{SNOWPLOW}/remove_from_cart/jsonschema/1-0-0",
    f"{SNOWPLOW}/change_form/jsonschema/1-0-0",
    f"{SNOWPLOW}/submit_form/jsonschema/1-0-0",
    f"{SNOWPLOW}/site_search/jsonschema/1-0-0",
    f"{SNOWPLOW}/consent_granted/jsonschema/1-0-0",
    f"{SNOWPLOW}/consent_withdrawn/jsonschema/1-0-0",
    f"{SNOWPLOW}/consent_document/jsonschema/1-0-0",
    f"{SNOWPLOW}/application_error/jsonschema/1-0-2",
]
#: Snowplow's own schemas only, so that the collector knows every one: an entity, and a
#: self-describing event.
SESSION = at.SelfDescribingJson(
    f"{SNOWPLOW}/client_session/jsonschema/1-0-2",
    {
        "userId": "5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
        "sessionId": "0b8f3c2a-7d6e-4f5a-9b8c-1d2e3f4a5b6c",
        "sessionIndex": 3,
        "previousSessionId": None,
        "storageMechanism": "SQLITE",
    },
)
SEARCH = at.SelfDescribingJson(f"{SNOWPLOW}/site_search/jsonschema/1-0-0", {"terms": ["x"]})
COMMON = {
    "event_subject": at.Subject().set_user_id("event-user").set_platform("mob"),
    "context": [SESSION],
    "true_timestamp": TTM,
}


def _events() -> dict[str, at.Event]:
    expiry = datetime(2030, 1, 1, tzinfo=timezone.utc)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        error = at.ApplicationError.from_exception(exc, is_fatal=False, **COMMON)
    return {
        "page_view": at.PageView("https://a.example/", "T", "https://r.example/", **COMMON),
        "page_ping": at.PagePing("https://a.example/", None, None, 0, 10, 0, 20, **COMMON),
        "structured": at.StructuredEvent("c", "a", "l", "p", 0, **COMMON),
        "self_describing": at.SelfDescribing(SEARCH, **COMMON),
        "screen_view": at.ScreenView(
            SCREEN_ID, "home", "feed", "login", PREVIOUS_ID, "form", "push", **COMMON
        ),
        "link_click": at.LinkClick("https://a.example/", "id", ["c"], "_self", "text", **COMMON),
        "add_to_cart": at.AddToCart("sku", 1, "n", "c", 2.5, "EUR", **COMMON),
        "remove_from_cart": at.RemoveFromCart("sku", 1.5, **COMMON),
        "form_change": at.FormChange("f", "e", "TEXTAREA", None, "text", ["x"], **COMMON),
        "form_submit": at.FormSubmit(
            "f",
            ["x"],
            [at.FormElement("a", "1", "INPUT", "number"), at.FormElement("b", None, "SELECT")],
            **COMMON,
        ),
        "site_search": at.SiteSearch(["a", "b"], {"k": "v", "f": False}, 3, 3, **COMMON),
        "consent_granted": at.ConsentGranted("doc", "1.0", "n", "d", expiry, **COMMON),
        "consent_withdrawn": at.ConsentWithdrawn(False, "doc", "1.0", "n", "d", **COMMON),
        "consent_withdrawn_all": at.ConsentWithdrawn(True, **COMMON),
        "application_error": error,
    }


EVENTS = _events()


@pytest.mark.parametrize("uri", SCHEMAS)
def test_the_schemas_the_event_classes_send_are_in_the_copy(uri: str) -> None:
    assert validator(uri) is not None


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw"])
@pytest.mark.parametrize("kind", list(EVENTS))
async def test_every_event_class_stores_an_event_valid_against_iglu_central(
    kind: str, base64_encode: bool
) -> None:
    subject = at.Subject().set_user_id("tracker-user").set_lang("en")
    async with kept_tracker(subject=subject, base64_encode=base64_encode) as (tracker, [storage]):
        await tracker.track(EVENTS[kind])
        stored = await rows(storage)
    assert len(stored) == 1
    for event in stored:
        check_event(event)


async def test_every_event_class_arrives_valid_at_a_collector_checking_iglu_central() -> None:
    async with Collector(iglu=IGLU_DIR) as collector:
        emitter = at.Emitter(collector.url, storage=at.MemoryStorage())
        async with at.Tracker(emitter, namespace="iglu", subject=at.Subject()) as tracker:
            for event in EVENTS.values():
                await tracker.track(event)
            assert await tracker.flush(10) == 0
        received = await collector.wait_for_events(len(EVENTS))
    assert len(received) == len(EVENTS)
    check_received(received)
    schemas = {
        event.decoded["unstruct_event"]["schema"]
        for event in received
        if event.payload["e"] == "ue"
    }
    assert schemas >= set(SCHEMAS) - {f"{SNOWPLOW}/consent_document/jsonschema/1-0-0"}
