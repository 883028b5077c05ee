"""The README quickstart as users write it, checked by ``mypy --strict`` (never run by pytest).

If a public signature changes in a way that breaks this file, users' type checks break
too: that is the point. Nothing runs at import; the code lives in ``main()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import httpx

import asynctracker as at

log = logging.getLogger(__name__)


def on_sent(successes: list[at.CallbackResult], failures: list[at.CallbackResult]) -> None:
    """A sync callback: log what the emitter delivered or gave up on."""
    delivered = sum(result.count for result in successes)
    for failure in failures:
        log.warning("%d event(s) failed with %d (dropped=%s)", *_explain(failure))
    log.info("delivered %d event(s)", delivered)


def _explain(result: at.CallbackResult) -> tuple[int, int, bool]:
    return result.count, result.status, result.dropped


async def on_sent_async(
    successes: list[at.CallbackResult], failures: list[at.CallbackResult]
) -> None:
    """Callbacks may be async too."""
    if failures:
        log.error("%d request(s) failed", len(failures))


class ListStorage:
    """A user-written storage: any class with the five methods is a Storage."""

    def __init__(self) -> None:
        self._rows: dict[int, dict[str, str]] = {}
        self._next = 1

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        self._rows[self._next] = dict(payload)
        self._next += 1
        return True

    async def delete_all_event_rows(self) -> int:
        count = len(self._rows)
        self._rows.clear()
        return count

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        return sum(self._rows.pop(row_id, None) is not None for row_id in ids)

    async def get_all_event_rows(self) -> list[at.EventRow]:
        return [at.EventRow(row_id, event) for row_id, event in sorted(self._rows.items())]

    async def get_event_rows_within_range(self, event_range: int) -> list[at.EventRow]:
        return (await self.get_all_event_rows())[:event_range]


async def main() -> None:
    """The quickstart: configure, track every kind of event, flush."""
    emitter = at.Emitter(
        "collector.acme.com",
        request_type="POST",
        protocol="https",
        send_limit=500,
        byte_limit_get=40_000,
        byte_limit_post=40_000,
        db_name="events.db",
        storage=None,
        callback=on_sent,
        http_client=None,
    )
    subject = at.Subject(user_id="u-1").set_language("en-GB").set_screen_resolution(1920, 1080)
    subject.from_id_cookie("5f8b2c1e-1a2b-4c3d-8e9f-0123456789ab.1700000000.7")
    tracker = at.Tracker(
        emitter, namespace="web", app_id="shop", platform="srv", base64_encode=True, subject=subject
    )

    async with tracker:
        eid: str = await tracker.track_page_view(
            page_url="https://acme.com/", page_title="Home", referrer="https://search.test/"
        )
        await tracker.track_struct_event(
            category="shop", action="add", label="sku-1", property_="red", value=2.5
        )
        user = at.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"id": 7})
        await tracker.track_self_describing_event(
            at.SelfDescribingJson("iglu:com.acme/click/jsonschema/1-0-0", {"x": 1, "tags": ["a"]}),
            contexts=[user],
        )
        await tracker.track_screen_view(name="home", id="2f1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
        await tracker.track_timing(category="db", variable="query", timing=12, label="users")
        await tracker.track_ecommerce_transaction(
            order_id="o-1",
            total_value=99.9,
            currency="EUR",
            items=[at.EcommerceItem(sku="sku-1", price=49.95, quantity=2, name="Mug")],
        )
        # Per-event options every track_* takes.
        await tracker.track_struct_event(
            "shop",
            "view",
            contexts=[user],
            subject=at.Subject(ip_address="203.0.113.9"),
            event_id="6a2f41a3-c54c-4b3c-8b1e-111111111111",
            timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc),
            true_timestamp=1_704_067_200_000,
        )
        try:
            await tracker.track_struct_event(category="", action="nothing")
        except at.InvalidEventError as exc:  # bad input is a typed error, nothing stored
            log.info("rejected: %s", exc)
        left: int = await tracker.flush()
        left = await tracker.flush(timeout=5.0)
        stats: at.EmitterStats = emitter.stats()
        log.info("%s: %d left, %d sent", eid, left, stats.sent)

    # Your own storage, your own httpx client (kept open: you close what you create).
    async with httpx.AsyncClient() as client:
        custom = at.Emitter(
            "http://127.0.0.1:9090",
            storage=ListStorage(),
            http_client=client,
            callback=on_sent_async,
            retry=at.RetryPolicy(max_attempts=5),
        )
        async with at.Tracker(custom) as second:
            await second.track_page_view("https://acme.com/about")


SERVICE = at.SelfDescribingJson("iglu:com.acme/service/jsonschema/1-0-0", {"name": "shop"})


def request_entity() -> at.SelfDescribingJson | None:
    """A sync context provider: None when there is nothing to add."""
    return None


async def flag_entities() -> list[at.SelfDescribingJson]:
    """An async context provider returning several entities."""
    return [at.SelfDescribingJson("iglu:com.acme/flag/jsonschema/1-0-0", {"name": "a"})]


async def tracker_wide_contexts(emitter: at.Emitter) -> None:
    """Static contexts, sync and async providers, and the request's Subject."""
    providers: list[at.ContextProvider] = [request_entity, flag_entities, lambda: SERVICE]
    tracker = at.Tracker(emitter, contexts=[SERVICE], context_providers=providers)
    with at.bind_subject(at.Subject(user_id="u-1")):
        try:
            await tracker.track_struct_event("shop", "add")
        except at.ContextProviderError as exc:
            log.error("a provider failed: %s", exc)
