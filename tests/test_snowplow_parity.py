"""The same program through snowplow-tracker 1.1 and through asynctracker's Event API.

``program(lib)`` builds its subjects and events with the classes of ``lib``, which is
the ``snowplow_tracker`` module or the ``asynctracker`` module: the same code, only the
import differs. Each library tracks them into one local Collector (snowplow-tracker's
Emitter pointed at it over http, in a worker thread since it blocks), and the decoded
events must be equal field for field, except ``eid``, ``dtm``, ``stm`` and ``tv`` and the
differences listed in ``DOCUMENTED``, each of which is a line of docs/migrating.md.
"""

from __future__ import annotations

import asyncio
import logging
import types
from pathlib import Path
from typing import Any

import pytest

import asynctracker as at
from asynctracker.collector import Collector


def _import_snowplow_tracker() -> types.ModuleType:
    """snowplow-tracker calls logging.basicConfig() when imported: undo that, so the
    rest of the session logs as before."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    import snowplow_tracker

    root.handlers[:] = handlers
    return snowplow_tracker


sp = _import_snowplow_tracker()

MIGRATING = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"
#: Fields that differ by nature: ids, times, the tracker's name and version.
VOLATILE = {"eid", "dtm", "stm", "tv"}
#: Every difference this test finds, each a line of docs/migrating.md's wire table.
DOCUMENTED = {
    "tv": "| `tv` | `py-1.1.0` | `asynctracker-<version>` |",
    "p": "| `p` when no Subject sets a platform | `pc` "
    "| the Tracker's `platform`, `srv` by default |",
    "p-event": "| `p` with an `event_subject` that sets none | `pc` (every Subject carries it) "
    "| the tracker's Subject's, or the Tracker's `platform` |",
    "stm": "| `stm` | whole seconds (`…000`) | milliseconds |",
    "user-agent": "| `User-Agent` header | `python-requests/<version>` "
    "| `python-httpx/<version>` |",
    "json": "| JSON in `ue_px`/`ue_pr`/`cx`/`co` | `json.dumps` defaults | compact, keys sorted |",
    "base64": "| base64 alphabet of `ue_px`/`cx` | URL-safe, padded | the same |",
}
#: The fields of DOCUMENTED that differ between the decoded events.
DIFFERENT_FIELDS = {"p"}
TTM = 1_699_999_999_000
SCREEN_ID = "2f1c6b0e-1b2a-4c3d-8e4f-5a6b7c8d9e0f"
PREVIOUS_ID = "0b8f3c2a-7d6e-4f5a-9b8c-1d2e3f4a5b6c"


def tracker_subject(lib: Any, platform: str | None) -> Any:
    """Every Subject setter both libraries have."""
    subject = lib.Subject() if platform is None else lib.Subject().set_platform(platform)
    return (
        subject.set_user_id("tracker-user")
        .set_screen_resolution(1920, 1080)
        .set_viewport(1280, 720)
        .set_color_depth(24)
        .set_timezone("Europe/London")
        .set_lang("en-GB")
        .set_ip_address("203.0.113.9")
        .set_useragent("Mozilla/5.0 (X11; Linux x86_64)")
        .set_domain_user_id("d1f3c4e2-8a4b-4c5d-9e6f-0a1b2c3d4e5f")
        .set_domain_session_id("5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d")
        .set_domain_session_index(3)
        .set_network_user_id("ecdff4d0-9175-40ac-a8bb-325c49733607")
    )


def program(lib: Any) -> list[Any]:
    """The events, made with ``lib``'s classes: every class both libraries have, with an
    event_subject (merged over the tracker's), contexts and true timestamps."""
    sdj = lib.SelfDescribingJson
    user = sdj("iglu:com.acme/user/jsonschema/1-0-0", {"id": 7, "name": "Zoë", "tags": ["a"]})
    flag = sdj("iglu:com.acme/flag/jsonschema/1-0-0", {"on": True, "ratio": 0.5})
    # Runs of "?" and ">" are "/" and "+" in the standard base64 alphabet, at any offset.
    note = "?????????>>>>>>>>>"
    click = sdj("iglu:com.acme/click/jsonschema/1-0-0", {"x": 0, "ok": None, "note": note})
    visitor = lib.Subject().set_user_id("event-user").set_lang("fr-FR").set_timezone("Europe/Paris")
    return [
        lib.PageView(
            page_url="https://shop.example/p?q=mug&x=1",
            page_title="Mugs \u2013 Shop",
            referrer="https://search.example/?q=mug",
            context=[user, flag],
            true_timestamp=TTM,
        ),
        lib.PageView("https://shop.example/", event_subject=visitor),
        lib.PagePing(
            "https://shop.example/", "Shop", None, 0, 640, 0, 2400, true_timestamp=TTM + 1.9
        ),
        lib.PagePing("https://shop.example/", min_x=0, max_x=0, event_subject=visitor),
        lib.StructuredEvent("shop", "add", "sku-1", "colour", 0, context=[user]),
        lib.StructuredEvent(
            category="shop", action="pay", value=19.9, event_subject=visitor, true_timestamp=TTM
        ),
        lib.SelfDescribing(click, context=[flag], event_subject=visitor, true_timestamp=TTM),
        lib.ScreenView(
            id_=SCREEN_ID,
            name="home",
            type="feed",
            previous_name="login",
            previous_id=PREVIOUS_ID,
            previous_type="form",
            transition_type="push",
            context=[user],
        ),
        lib.ScreenView(SCREEN_ID, "cart", event_subject=visitor, true_timestamp=TTM + 0.5),
    ]


def run_snowplow_tracker(url: str, encode_base64: bool, platform: str | None) -> list[str | None]:
    """snowplow-tracker 1.1, as its users write it (blocking: run in a worker thread)."""
    emitter = sp.Emitter(url, protocol="http", method="post", batch_size=100)
    tracker = sp.Tracker(
        namespace="parity",
        emitters=emitter,
        subject=tracker_subject(sp, platform),
        app_id="shop",
        encode_base64=encode_base64,
    )
    ids = [tracker.track(event) for event in program(sp)]
    tracker.flush()
    return ids


async def run_asynctracker(url: str, encode_base64: bool, platform: str | None) -> list[str]:
    """The same with asynctracker: the Tracker takes the same keywords."""
    emitter = at.Emitter(url, storage=at.MemoryStorage())
    async with at.Tracker(
        namespace="parity",
        emitters=emitter,
        subject=tracker_subject(at, platform),
        app_id="shop",
        encode_base64=encode_base64,
    ) as tracker:
        ids = [await tracker.track(event) for event in program(at)]
        assert await tracker.flush(10) == 0
    return ids


def comparable(event: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in event.items() if key not in VOLATILE | DIFFERENT_FIELDS}


@pytest.mark.parametrize("platform", [None, "mob"], ids=["default-platform", "subject-platform"])
@pytest.mark.parametrize("encode_base64", [True, False], ids=["base64", "raw"])
async def test_both_libraries_send_the_same_events(
    encode_base64: bool, platform: str | None
) -> None:
    count = len(program(at))
    async with Collector() as collector:
        theirs_ids = await asyncio.to_thread(
            run_snowplow_tracker, collector.url, encode_base64, platform
        )
        theirs = await collector.wait_for_events(count)
        ours_ids = await run_asynctracker(collector.url, encode_base64, platform)
        ours = (await collector.wait_for_events(2 * count))[count:]
    assert [event.payload["tv"] for event in theirs] == [f"py-{sp.__version__}"] * count
    assert [event.payload["eid"] for event in theirs] == theirs_ids
    assert [event.payload["eid"] for event in ours] == ours_ids
    assert all(event.valid for event in theirs + ours), [e.errors for e in theirs + ours]
    encoded = ("ue_px", "cx") if encode_base64 else ("ue_pr", "co")
    assert any(key in event.payload for event in ours for key in encoded)
    for mine, reference in zip(ours, theirs, strict=True):
        assert comparable(mine.decoded) == comparable(reference.decoded)
    # The documented differences are real.
    merged = ["uid" in event.payload and event.payload["uid"] == "event-user" for event in ours]
    if platform is None:
        assert [event.payload["p"] for event in theirs] == ["pc"] * count
        assert [event.payload["p"] for event in ours] == ["srv"] * count
    else:
        # snowplow-tracker's event_subject brings its own p=pc; here the tracker's stays.
        assert [event.payload["p"] for event in theirs] == [
            "pc" if has_own else platform for has_own in merged
        ]
        assert [event.payload["p"] for event in ours] == [platform] * count
    assert any(merged)
    assert not all(merged)
    assert all(event.payload["tv"] == f"asynctracker-{at.__version__}" for event in ours)
    assert all(event.payload["stm"].endswith("000") for event in theirs)
    requests = collector.requests
    agents = {request.headers["user-agent"].split("/")[0] for request in requests}
    assert agents == {"python-requests", "python-httpx"}
    assert {(request.method, request.path) for request in requests} == {
        ("POST", "/com.snowplowanalytics.snowplow/tp2")
    }
    assert {request.headers["content-type"] for request in requests} == {
        "application/json; charset=utf-8"
    }
    if encode_base64:
        for event in (theirs[6], ours[6]):
            assert "_" in event.payload["ue_px"]
            assert "-" in event.payload["ue_px"]
            assert not {"+", "/"} & set(event.payload["ue_px"] + event.payload["cx"])
    else:
        assert theirs[6].payload["ue_pr"].startswith('{"schema": ')
        assert ours[6].payload["ue_pr"].startswith('{"data":{')


def test_every_documented_difference_is_a_line_of_the_migration_guide() -> None:
    lines = MIGRATING.read_text(encoding="utf-8").splitlines()
    for field, line in DOCUMENTED.items():
        assert line in lines, f"{field}: {line!r} is not a line of {MIGRATING.name}"
