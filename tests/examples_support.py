"""Shared test support: loading files that are not importable modules (examples/, the
typing quickstart), a realistic ``_sp_id`` cookie, a tracker factory for apps, and the
visit to the example shop that both framework suites run under a real server."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import httpx
from iglu import check_received

import asynctracker as at
from asynctracker.collector import Collector, ReceivedEvent

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DUID = "5f8b2c1e-1a2b-4c3d-8e9f-0123456789ab"
SID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def sp_id_cookie(session_index: int) -> str:
    """A JavaScript tracker ``_sp_id`` cookie value with this session index."""
    return f"{DUID}.1700000000.{session_index}.1700000500.1699999000.{SID}"


def load_file(path: Path, name: str) -> ModuleType:
    """Import a Python file by path (``tests/typing`` would shadow the stdlib ``typing``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py the way ``python examples/<name>.py`` finds it."""
    return load_file(EXAMPLES / f"{name}.py", f"example_{name}")


def collector_tracker(collector: Collector, db_path: Path) -> Callable[[], at.Tracker]:
    """A factory for apps: a fresh tracker per start, sending to ``collector``."""

    def make() -> at.Tracker:
        return at.Tracker(at.Emitter(collector.url, db_name=db_path), app_id="api")

    return make


# -- the shop both example apps serve (examples/fastapi_app.py, examples/aiohttp_app.py) --


class ShopVisit(NamedTuple):
    base_url: str
    cart_event_id: str
    checkout_event_id: str


async def visit_shop(
    base_url: str, headers: dict[str, str], *, cookie: str, session_index: int, order_id: str
) -> ShopVisit:
    """Browse the example shop as a user would: home page, add a mug, check out."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        client.cookies.set(cookie, sp_id_cookie(session_index))
        assert (await client.get("/", headers=headers)).json() == {"hello": "shop"}
        cart = await client.post("/cart/mug", params={"quantity": 2}, headers=headers)
        checkout = await client.post(f"/checkout/{order_id}", headers=headers)
    return ShopVisit(base_url, cart.json()["event_id"], checkout.json()["event_id"])


def check_shop_events(
    events: list[ReceivedEvent],
    visit: ShopVisit,
    *,
    order_id: str,
    cart_schema: str,
    app_id: str,
    language: str,
    session_index: int,
) -> dict[str, list[dict[str, str]]]:
    """What the visit must have delivered, valid and attributed; returns payloads by type."""
    check_received(events)
    by_type: dict[str, list[dict[str, str]]] = {}
    for event in events:
        by_type.setdefault(event.payload["e"], []).append(event.payload)
    assert sorted(by_type) == ["pv", "ti", "tr", "ue"]
    # The middleware's default filters: the home page is a page view, the POSTs are not.
    assert [pv["url"] for pv in by_type["pv"]] == [f"{visit.base_url}/"]
    (cart,) = [event for event in events if event.payload["e"] == "ue"]
    assert cart.payload["eid"] == visit.cart_event_id
    assert cart.decoded["unstruct_event"] == {
        "schema": cart_schema,
        "data": {"quantity": 2, "sku": "mug"},
    }
    assert by_type["tr"][0]["eid"] == visit.checkout_event_id
    for payload in (event.payload for event in events):
        assert payload["aid"] == app_id
        assert payload["ip"] == "127.0.0.1"
        assert payload["ua"] == "Mozilla/5.0 (test)"
        assert payload["lang"] == language
        assert (payload["duid"], payload["vid"], payload["sid"]) == (DUID, str(session_index), SID)
    return by_type


async def assert_nothing_left(db_path: Path) -> None:
    """The tracker's SQLite file holds no undelivered event."""
    async with at.SQLiteStorage(db_path) as storage:
        assert await storage.get_all_event_rows() == []
