"""The Event API as users write it, checked by ``mypy --strict`` (never run by pytest).

snowplow-tracker code moved over by changing its imports must type-check: the event
classes, their keywords, a json_encoder and a before_track hook with plain annotations.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timezone
from decimal import Decimal

import asynctracker as at
from asynctracker.events import Event, FormElement, PageView


def encode(value: object) -> object:
    if isinstance(value, (datetime, Decimal)):
        return str(value)
    raise TypeError(type(value).__name__)


def encode_dates(value: datetime) -> str:
    """An encoder typed for the one type it handles is accepted too."""
    return value.isoformat()


def redact(event: at.TrackedEvent) -> None:
    event.fields.pop("ip", None)
    uid = event.fields.get("uid")
    if uid is not None:
        event.fields["uid"] = hashlib.sha256(uid.encode()).hexdigest()
    if event.event_type == "pp":
        event.drop()


def events(subject: at.Subject) -> list[Event]:
    ctx = [at.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"id": 7})]
    page: PageView = at.PageView("https://a/", "T", None, subject, ctx, 1_700_000_000_000)
    return [
        page,
        dataclasses.replace(page, page_title="U"),
        at.PagePing("https://a/", min_x=0, max_x=10, true_timestamp=1.7e12),
        at.StructuredEvent("c", "a", value=0),
        at.SelfDescribing(ctx[0], event_subject=subject),
        at.ScreenView(id_="2f1c6b0e-1b2a-4c3d-8e4f-5a6b7c8d9e0f", name="home", type="feed"),
        at.LinkClick("https://a/", element_classes=["btn"]),
        at.AddToCart("sku", 2, unit_price=9.5),
        at.RemoveFromCart("sku", 1),
        at.FormChange("f", "e", "INPUT", None, type_="text"),
        at.FormSubmit("f", elements=[FormElement("n", "v", "INPUT")]),
        at.SiteSearch(["mug"], {"in_stock": True}, total_results=3),
        at.ConsentGranted("doc", "1", expiry=datetime(2030, 1, 1, tzinfo=timezone.utc)),
        at.ConsentWithdrawn(all_=True),
        at.ApplicationError("boom", programming_language="PYTHON"),
        at.ApplicationError.from_exception(ValueError("boom"), is_fatal=False),
    ]


async def main() -> None:
    first = at.Emitter("collector.example", db_name="first.db")
    second = at.Emitter("collector.example", db_name="second.db")
    subject = at.Subject().set_user_id("u").set_lang("en").set_platform("web")
    hooks: list[at.BeforeTrack] = [redact]
    tracker = at.Tracker(
        namespace="ns",
        emitters=[first, second],
        subject=subject,
        app_id="app",
        encode_base64=False,
        json_encoder=encode,
        before_track=hooks,
    )
    at.Tracker(first, json_encoder=encode_dates).add_emitter(second)
    async with tracker:
        for event in events(subject):
            event_id: str = await tracker.track(event)
            print(event_id)
        emitters: tuple[at.Emitter, ...] = tracker.emitters
        left: int = await tracker.flush()
        print(len(emitters), left)
