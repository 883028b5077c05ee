"""The Django integration through Django's test Client (the real handler and middleware
chain) with a real collector on 127.0.0.1 and a real SQLite queue. This module is the
URLconf of the settings it configures; under gunicorn: tests/test_sync_frameworks.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from examples_support import DUID, sp_id_cookie
from sync_support import ThreadedCollector, page_views

import asynctracker as at
from asynctracker import sync
from asynctracker.integrations.django import get_subject, get_tracker, tracker_from_settings

MIDDLEWARE = ["asynctracker.integrations.django.TrackingMiddleware"]


@pytest.fixture(scope="module", autouse=True)
def _django() -> None:
    if not settings.configured:
        settings.configure(
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=MIDDLEWARE,
        )
        django.setup()


@contextlib.contextmanager
def tracking(**options: Any) -> Iterator[None]:
    """``settings.ASYNCTRACKER = options`` for the block; the tracker made from them is
    closed (flushed) when the block ends, as overriding the setting again does."""
    with override_settings(ASYNCTRACKER=options):
        yield


@pytest.fixture
def shop(threaded_collector: ThreadedCollector, db_path: Path) -> dict[str, Any]:
    return {"collector": threaded_collector.url, "db_name": db_path, "app_id": "django"}


def subject_view(request: HttpRequest) -> JsonResponse:
    bound = at.bound_subject()
    assert bound is get_subject(request)
    return JsonResponse(bound.fields)


def peer_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"fields": get_subject(request).fields, "bound": at.bound_subject() is not None}
    )


def buy(request: HttpRequest, sku: str) -> JsonResponse:
    return JsonResponse({"event_id": get_tracker().track_struct_event("shop", "buy", label=sku)})


async def async_buy(request: HttpRequest, sku: str) -> JsonResponse:
    refused = False
    try:
        get_tracker().track_struct_event("shop", "buy", label=sku)
    except at.BlockingCallError:
        refused = True  # it would have blocked the event loop serving every request
    track = sync_to_async(get_tracker().track_struct_event)
    return JsonResponse({"refused": refused, "event_id": await track("shop", "buy", label=sku)})


def page(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(name)


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


urlpatterns = [
    path("subject", subject_view),
    path("peer", peer_view),
    path("buy/<str:sku>", buy),
    path("async-buy/<str:sku>", async_buy),
    path("page/<str:name>", page),
    path("old", lambda request: HttpResponseRedirect("/page/new")),
    path("health", lambda request: HttpResponse("ok")),
    path("boom", boom),
]


def test_the_middleware_binds_the_requests_subject_while_the_view_runs(
    shop: dict[str, Any],
) -> None:
    with tracking(**shop, trusted_proxies=["127.0.0.1"]):
        client = Client(HTTP_USER_AGENT="Mozilla/5.0 (test)", HTTP_ACCEPT_LANGUAGE="fr-CA")
        client.cookies["_sp_id.abcd"] = sp_id_cookie(2)
        fields = client.get("/subject", HTTP_X_FORWARDED_FOR="198.51.100.7").json()
        assert fields["ip"] == "198.51.100.7"  # the test client's peer, 127.0.0.1, is trusted
        assert (fields["ua"], fields["lang"], fields["duid"]) == (
            "Mozilla/5.0 (test)",
            "fr-CA",
            DUID,
        )
        assert at.bound_subject() is None
    with tracking(**shop):  # no trusted proxy: X-Forwarded-For is anyone's to write
        assert Client().get("/subject", HTTP_X_FORWARDED_FOR="198.51.100.7").json()["ip"] == (
            "127.0.0.1"
        )


def test_events_tracked_in_views_arrive_once_with_their_requests_subject(
    threaded_collector: ThreadedCollector, shop: dict[str, Any]
) -> None:
    with tracking(**shop):
        eids = [
            Client().post(f"/buy/{n}", HTTP_USER_AGENT=f"agent-{n}").json()["event_id"]
            for n in range(10)
        ]
        assert get_tracker().flush(timeout=10) == 0
    events = [event.payload for event in threaded_collector.collector.events]
    assert sorted(p["eid"] for p in events) == sorted(eids)
    assert all(p["ua"] == f"agent-{p['se_la']}" and p["aid"] == "django" for p in events)


def test_page_views_follow_the_same_filters_as_the_async_middlewares(
    threaded_collector: ThreadedCollector, shop: dict[str, Any]
) -> None:
    with tracking(**shop, track_page_views=True):
        client = Client(raise_request_exception=False)
        assert client.get("/page/a", HTTP_REFERER="https://ref.example/").status_code == 200
        assert client.get("/old").status_code == 302
        assert client.post("/buy/mug").status_code == 200
        assert client.get("/missing").status_code == 404
        assert client.get("/boom").status_code == 500
        assert client.get("/health").status_code == 200
        get_tracker().flush(timeout=10)
    assert page_views(threaded_collector.collector) == [
        ("http://testserver/old", None),
        ("http://testserver/page/a", "https://ref.example/"),
    ]


def test_page_view_options_come_from_the_same_setting(
    threaded_collector: ThreadedCollector, shop: dict[str, Any]
) -> None:
    with tracking(**shop, track_page_views=True, include_paths=["/page/"], methods=["GET", "POST"]):
        for path_ in ("/page/a", "/old", "/subject"):
            Client().get(path_)
        Client().post("/page/b")
        get_tracker().flush(timeout=10)
    urls = sorted(e.payload["url"] for e in threaded_collector.collector.events)
    assert urls == ["http://testserver/page/a", "http://testserver/page/b"]


def test_a_changed_setting_closes_the_old_tracker_and_the_next_use_makes_a_new_one(
    shop: dict[str, Any],
) -> None:
    with tracking(**shop):
        first = get_tracker()
        first.track_struct_event("shop", "before")
        with tracking(**{**shop, "app_id": "other"}):
            assert all(emitter.closed for emitter in first.emitters)
            second = get_tracker()
            assert second is not first
    assert all(emitter.closed for emitter in second.emitters)


DOTTED: list[sync.Tracker] = []


def dotted_tracker() -> sync.Tracker:
    """Named in settings as ``{"tracker": "test_sync_django.dotted_tracker"}``."""
    DOTTED.append(sync.Tracker(sync.Emitter("http://127.0.0.1:9", storage=at.MemoryStorage())))
    return DOTTED[-1]


def test_tracker_may_name_a_function_instead_of_the_emitter_and_tracker_keywords() -> None:
    with tracking(tracker=f"{__name__}.dotted_tracker", trusted_proxies=["10.0.0.0/8"]):
        assert get_tracker() is DOTTED[-1]
        assert get_tracker() is DOTTED[-1]  # once per process
    with (
        tracking(tracker=dotted_tracker, app_id="shop"),
        pytest.raises(at.ConfigurationError, match=r"leave out \['app_id'\]"),
    ):
        get_tracker()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"collector": "http://127.0.0.1:9", "app_idd": "typo"}, r"unknown keys \['app_idd'\]"),
        ({"app_id": "shop"}, "needs 'collector'"),
        ({"tracker": lambda: "not a tracker"}, "must return an asynctracker.sync.Tracker"),
        ({"collector": "http://127.0.0.1:9", "overflow": "explode"}, "overflow"),
    ],
    ids=["typo", "no-collector", "not-a-tracker", "bad-option"],
)
def test_bad_settings_raise_a_configuration_error_naming_the_problem(
    options: dict[str, Any], error: str
) -> None:
    with tracking(**options), pytest.raises(at.ConfigurationError, match=error):
        tracker_from_settings()


def test_a_typo_in_the_middlewares_options_fails_when_django_loads_it() -> None:
    with (
        tracking(collector="http://127.0.0.1:9", trusted_proxies=["not-an-ip"]),
        pytest.raises(at.ConfigurationError, match="trusted_proxies entry"),
    ):
        Client().get("/health")
    with (
        tracking(collector="http://127.0.0.1:9", statuses=[700]),
        pytest.raises(at.ConfigurationError, match="statuses entry"),
    ):
        Client().get("/health")


def test_without_the_middleware_get_subject_builds_one_from_the_peer() -> None:
    with tracking(collector="http://127.0.0.1:9"), override_settings(MIDDLEWARE=[]):
        answer = Client().get("/peer", HTTP_X_FORWARDED_FOR="198.51.100.7").json()
    assert answer == {"fields": {"ip": "127.0.0.1"}, "bound": False}


async def test_under_asgi_views_see_the_requests_subject_and_async_ones_move_calls_off_the_loop(
    threaded_collector: ThreadedCollector, shop: dict[str, Any]
) -> None:
    with tracking(**shop, track_page_views=True):
        client, agent = AsyncClient(), {"User-Agent": "asgi-agent"}
        fields = (await client.get("/subject", headers=agent)).json()
        bought = (await client.post("/buy/mug", headers=agent)).json()["event_id"]
        from_async = (await client.post("/async-buy/cup", headers=agent)).json()
        await asyncio.to_thread(get_tracker().flush, 10)
    assert fields["ua"] == "asgi-agent"
    assert from_async["refused"] is True
    events = {
        e.payload.get("se_la", e.payload["e"]): e.payload
        for e in threaded_collector.collector.events
    }
    assert sorted(events) == ["cup", "mug", "pv"]
    assert (events["mug"]["eid"], events["cup"]["eid"]) == (bought, from_async["event_id"])
    assert {payload["ua"] for payload in events.values()} == {"asgi-agent"}
