"""Golden wire snapshots: any change to what goes on the wire shows up in review.

For a fixed tracker configuration and fixed event ids and timestamps, the exact payload
of each event type (base64 on and off) and one whole POST body are compared with
``tests/snapshots/*.json``. Volatile fields are normalised: ``tv`` (the library version)
and ``stm`` (the send time). Run with ``UPDATE_SNAPSHOTS=1`` to rewrite the files after an
intended change, then review the diff.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from iglu import check_event, check_post_body

import asynctracker as at

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
TV = "<tv>"
STM = "<stm>"
TP2 = "/com.snowplowanalytics.snowplow/tp2"

DTM = 1_700_000_000_123
TTM = 1_699_999_999_000
CTX = at.SelfDescribingJson(
    "iglu:com.acme/user/jsonschema/1-0-0", {"id": 7, "name": "Zoë", "tags": ["a", "b"]}
)


def eid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def fixed(n: int) -> dict[str, Any]:
    return {"event_id": eid(n), "timestamp": DTM, "true_timestamp": TTM, "contexts": [CTX]}


EVENTS: dict[str, Callable[[at.Tracker], Awaitable[str]]] = {
    "page_view": lambda t: t.track_page_view(
        page_url="https://acme.com/shop?q=mug&x=1",
        page_title="Shop \u2013 Mugs",
        referrer="https://search.example/?q=mug",
        **fixed(1),
    ),
    "struct_event": lambda t: t.track_struct_event(
        category="shop", action="add", label="sku-1", property_="colour", value=2.5, **fixed(2)
    ),
    "self_describing_event": lambda t: t.track_self_describing_event(
        at.SelfDescribingJson(
            "iglu:com.acme/click/jsonschema/1-0-0", {"x": 1, "target": "#buy", "ok": True}
        ),
        **fixed(3),
    ),
    "screen_view": lambda t: t.track_screen_view(
        name="home", id="2f1c6b0e-1b2a-4c3d-8e4f-5a6b7c8d9e0f", **fixed(4)
    ),
    "timing": lambda t: t.track_timing(
        category="db", variable="query", timing=12, label="users", **fixed(5)
    ),
    "ecommerce_transaction": lambda t: t.track_ecommerce_transaction(
        order_id="o-1",
        total_value=99.9,
        tax_value=16.65,
        shipping=4,
        affiliation="web",
        city="Lyon",
        state="ARA",
        country="FR",
        currency="EUR",
        items=[
            at.EcommerceItem(
                sku="sku-1",
                price=49.95,
                quantity=2,
                name="Mug",
                category="kitchen",
                event_id=eid(7),
            ),
            at.EcommerceItem(sku="sku-2", price=0.5, event_id=eid(8)),
        ],
        **fixed(6),
    ),
}


def normalise(event: dict[str, str]) -> dict[str, str]:
    out = dict(event)
    assert out["tv"] == f"asynctracker-{at.__version__}"
    out["tv"] = TV
    if "stm" in out:
        assert out["stm"].isdigit()
        out["stm"] = STM
    return out


def normalise_body(body: str) -> str:
    body, tv_count = re.subn(r'"tv":"asynctracker-[^"]*"', f'"tv":"{TV}"', body)
    body, stm_count = re.subn(r'"stm":"\d+"', f'"stm":"{STM}"', body)
    assert tv_count == stm_count > 0
    return body


def compare(name: str, actual: object) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"no snapshot {path}; run with UPDATE_SNAPSHOTS=1 to create it"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert actual == expected, f"wire changed for {name}; if intended, UPDATE_SNAPSHOTS=1"


async def stored_payloads(
    call: Callable[[at.Tracker], Awaitable[str]], *, base64_encode: bool
) -> list[dict[str, str]]:
    """What ``call`` stores, using a tracker whose collector always answers 500.

    A respx router answers through ``httpx.MockTransport`` (respx without patching
    httpx): the snapshots read the storage, not the wire.
    """
    storage = at.MemoryStorage()
    collector = respx.Router()
    collector.route(host="collector.acme.com").respond(500)
    async with httpx.AsyncClient(transport=httpx.MockTransport(collector.async_handler)) as client:
        emitter = at.Emitter(
            "collector.acme.com",
            storage=storage,
            http_client=client,
            retry=at.RetryPolicy(auto_retry=False),
        )
        tracker = at.Tracker(
            emitter,
            namespace="snap",
            app_id="shop",
            platform="srv",
            base64_encode=base64_encode,
            subject=at.Subject(user_id="u-1", language="fr-FR", screen_resolution=(1920, 1080)),
        )
        try:
            await call(tracker)
            return [row.event for row in await storage.get_all_event_rows()]
        finally:
            await tracker.aclose()


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw"])
@pytest.mark.parametrize("kind", list(EVENTS))
async def test_event_payload_matches_snapshot(kind: str, base64_encode: bool) -> None:
    events = await stored_payloads(EVENTS[kind], base64_encode=base64_encode)
    for event in events:
        check_event(event)
        assert "stm" not in event
    compare(f"{kind}-{'base64' if base64_encode else 'raw'}", [normalise(e) for e in events])


async def test_post_body_matches_snapshot() -> None:
    async def track_all(tracker: at.Tracker) -> str:
        for call in EVENTS.values():
            await call(tracker)
        return ""

    events = await stored_payloads(track_all, base64_encode=True)
    storage = at.MemoryStorage()
    for event in events:
        await storage.add_event_row(event)
    # respx intercepts the emitter's own client: the body is the default configuration's.
    async with respx.mock() as collector:
        route = collector.post(f"https://collector.acme.com{TP2}").respond(200)
        emitter = at.Emitter("collector.acme.com", storage=storage)
        try:
            assert await emitter.flush() == 0
        finally:
            await emitter.aclose()
        assert route.call_count == 1
        body = route.calls.last.request.content

    check_post_body(body)
    text = normalise_body(body.decode("utf-8"))
    compare("post_body", {"body": text, "document": json.loads(text)})
