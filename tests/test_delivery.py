"""Delivery against a real collector on 127.0.0.1, with real SQLite files.

These tests assert outcomes (what arrived, what is still stored, what the callback saw),
never speed, except for one generous bound on ``flush(timeout=...)``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from iglu import check_received

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply

NO_AUTO_RETRY = at.RetryPolicy(auto_retry=False)


class Calls:
    """A callback that records every (successes, failures) pair it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[at.CallbackResult], list[at.CallbackResult]]] = []

    def __call__(
        self, successes: list[at.CallbackResult], failures: list[at.CallbackResult]
    ) -> None:
        self.calls.append((list(successes), list(failures)))

    @property
    def successes(self) -> list[at.CallbackResult]:
        return [result for ok, _ in self.calls for result in ok]

    @property
    def failures(self) -> list[at.CallbackResult]:
        return [result for _, failed in self.calls for result in failed]


async def stored_count(path: Path) -> int:
    async with at.SQLiteStorage(path) as storage:
        return len(await storage.get_all_event_rows())


async def track_every_kind(tracker: at.Tracker) -> list[str]:
    ctx = [at.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"id": 7})]
    return [
        await tracker.track_page_view(page_url="https://acme.com/", page_title="Home"),
        await tracker.track_struct_event(
            category="shop", action="add", label="sku-1", value=2.5, contexts=ctx
        ),
        await tracker.track_self_describing_event(
            at.SelfDescribingJson("iglu:com.acme/click/jsonschema/1-0-0", {"x": 1}), contexts=ctx
        ),
        await tracker.track_screen_view(name="home", id="2f1c6b0e-1b2a-4c3d-8e4f-5a6b7c8d9e0f"),
        await tracker.track_timing(category="db", variable="query", timing=12, label="users"),
        await tracker.track_ecommerce_transaction(
            order_id="o-1",
            total_value=99.9,
            currency="EUR",
            items=[at.EcommerceItem(sku="sku-1", price=49.95, quantity=2, name="Mug")],
        ),
    ]


@pytest.mark.parametrize("request_type", ["POST", "GET"])
@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw-json"])
async def test_every_event_type_is_delivered_and_valid(
    collector: Collector, db_path: Path, request_type: str, base64_encode: bool
) -> None:
    emitter = at.Emitter(collector.url, request_type=request_type, db_name=db_path)
    async with at.Tracker(
        emitter, namespace="ns", app_id="shop", base64_encode=base64_encode
    ) as tracker:
        eids = await track_every_kind(tracker)
        assert await tracker.flush() == 0

    received = await collector.wait_for_events(7)
    check_received(received)
    assert len(received) == 7
    assert {event.method for event in received} == {request_type}
    assert set(eids) <= {event.payload["eid"] for event in received}
    assert sorted(event.payload["e"] for event in received) == ["pv", "se", "ti", "tr"] + ["ue"] * 3
    assert await stored_count(db_path) == 0


@pytest.mark.parametrize("request_type", ["POST", "GET"])
async def test_callback_reports_each_request_with_its_count_and_200(
    collector: Collector, db_path: Path, request_type: str
) -> None:
    calls = Calls()
    emitter = at.Emitter(
        collector.url,
        request_type=request_type,
        db_name=db_path,
        byte_limit_post=1_500,
        callback=calls,
    )
    async with at.Tracker(emitter) as tracker:
        for n in range(30):
            await tracker.track_struct_event(category="c", action=f"a-{n}")
        assert await tracker.flush() == 0

    assert calls.failures == []
    assert all(result == at.CallbackResult(result.count, 200) for result in calls.successes)
    assert sum(result.count for result in calls.successes) == 30
    assert len(calls.successes) == len(collector.requests)
    assert sorted(r.count for r in calls.successes) == sorted(
        _events_in(r) for r in collector.requests
    )
    if request_type == "GET":
        assert all(result.count == 1 for result in calls.successes)


def _events_in(request: ReceivedRequest) -> int:
    return len(json.loads(request.body)["data"]) if request.body else 1


async def test_async_callback_is_awaited(collector: Collector, db_path: Path) -> None:
    seen: list[at.CallbackResult] = []

    async def callback(ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        await asyncio.sleep(0)
        seen.extend(ok + failed)

    emitter = at.Emitter(collector.url, db_name=db_path, callback=callback)
    async with at.Tracker(emitter) as tracker:
        await tracker.track_page_view(page_url="https://a/")
        assert await tracker.flush() == 0
    assert seen == [at.CallbackResult(1, 200)]


async def test_a_callback_that_raises_does_not_stop_delivery(
    collector: Collector, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        raise RuntimeError("boom from the user's callback")

    emitter = at.Emitter(collector.url, db_name=db_path, callback=callback)
    async with at.Tracker(emitter) as tracker:
        for n in range(3):
            await tracker.track_page_view(page_url=f"https://a/{n}")
            assert await tracker.flush() == 0
    assert len(await collector.wait_for_events(3)) == 3
    assert "callback" in caplog.text


@pytest.mark.parametrize("request_type", ["POST", "GET"])
async def test_collector_answering_500_keeps_every_row_in_sqlite(
    collector: Collector, db_path: Path, request_type: str
) -> None:
    collector.responder = lambda _: Reply(500)
    calls = Calls()
    emitter = at.Emitter(
        collector.url,
        request_type=request_type,
        db_name=db_path,
        callback=calls,
        retry=NO_AUTO_RETRY,
    )
    tracker = at.Tracker(emitter)
    try:
        eids = await track_every_kind(tracker)
        left = await tracker.flush()
        assert left == 7
        assert collector.requests
        assert all(request.status == 500 for request in collector.requests)
    finally:
        await tracker.aclose()

    assert calls.successes == []
    assert calls.failures
    assert {result.status for result in calls.failures} == {500}
    assert not any(result.dropped for result in calls.failures)
    assert collector.events == []
    async with at.SQLiteStorage(db_path) as storage:
        rows = await storage.get_all_event_rows()
    assert len(rows) == 7
    assert set(eids) <= {row.event["eid"] for row in rows}


async def test_unreachable_collector_reports_status_minus_one_and_loses_nothing(
    db_path: Path,
) -> None:
    dead = Collector()
    await dead.start()
    url = dead.url
    await dead.stop()

    calls = Calls()
    emitter = at.Emitter(url, db_name=db_path, callback=calls, retry=NO_AUTO_RETRY, timeout=2)
    tracker = at.Tracker(emitter)
    try:
        for n in range(5):
            await tracker.track_page_view(page_url=f"https://a/{n}")
        assert await tracker.flush() == 5
    finally:
        await tracker.aclose()
    assert calls.successes == []
    assert calls.failures
    assert {result.status for result in calls.failures} == {-1}
    assert await stored_count(db_path) == 5


async def test_a_new_emitter_on_the_same_file_sends_what_the_last_one_could_not(
    db_path: Path,
) -> None:
    collector = Collector()
    await collector.start()
    await collector.stop()  # down, but we know the port it will come back on

    first = at.Emitter(collector.url, db_name=db_path, close_timeout=0.5)
    async with at.Tracker(first) as tracker:
        eids = await track_every_kind(tracker)
    assert first.closed
    assert await stored_count(db_path) == 7

    async with collector:
        second = at.Emitter(collector.url, db_name=db_path)
        async with at.Tracker(second) as tracker:
            assert await tracker.flush() == 0
        received = await collector.wait_for_events(7)
        check_received(received)
        assert sorted(
            event.payload["eid"] for event in received if event.payload["e"] != "ti"
        ) == sorted(eids)
        assert len(received) == 7
    assert await stored_count(db_path) == 0


async def test_2000_concurrent_tracks_are_each_delivered_exactly_once(
    collector: Collector, db_path: Path
) -> None:
    emitter = at.Emitter(collector.url, db_name=db_path)
    async with at.Tracker(emitter) as tracker:
        eids = await asyncio.gather(
            *(tracker.track_struct_event(category="load", action=f"a-{n}") for n in range(2000))
        )
        assert await tracker.flush() == 0

    received = await collector.wait_for_events(2000)
    got = [event.payload["eid"] for event in received]
    assert len(got) == 2000
    assert len(set(got)) == 2000
    assert set(got) == set(eids)
    assert len(set(eids)) == 2000
    assert all(event.valid for event in received)


async def test_leaving_async_with_flushes(collector: Collector, db_path: Path) -> None:
    emitter = at.Emitter(collector.url, db_name=db_path)
    async with at.Tracker(emitter) as tracker:
        eids = [await tracker.track_page_view(page_url=f"https://a/{n}") for n in range(20)]
    assert emitter.closed
    assert await stored_count(db_path) == 0
    received = await collector.wait_for_events(20, timeout=1)
    assert {event.payload["eid"] for event in received} == set(eids)


async def test_emitter_async_with_flushes_too(collector: Collector, db_path: Path) -> None:
    async with at.Emitter(collector.url, db_name=db_path) as emitter:
        await at.Tracker(emitter).track_page_view(page_url="https://a/")
    assert len(await collector.wait_for_events(1, timeout=1)) == 1


@pytest.mark.parametrize("opened", [True, False], ids=["opened", "never-opened"])
async def test_aclose_twice_is_fine(collector: Collector, db_path: Path, opened: bool) -> None:
    emitter = at.Emitter(collector.url, db_name=db_path)
    tracker = at.Tracker(emitter)
    if opened:
        await tracker.track_page_view(page_url="https://a/")
    await tracker.aclose()
    await tracker.aclose()
    await emitter.aclose()
    assert emitter.closed


async def test_an_injected_http_client_stays_open_after_the_emitter_closes(
    collector: Collector, db_path: Path
) -> None:
    async with httpx.AsyncClient() as client:
        emitter = at.Emitter(collector.url, db_name=db_path, http_client=client)
        async with at.Tracker(emitter) as tracker:
            await tracker.track_page_view(page_url="https://a/")
        assert emitter.closed
        assert not client.is_closed
        response = await client.get(f"{collector.url}/health")
        assert response.status_code == 200
    assert len(collector.events) == 1


async def test_flush_with_timeout_returns_on_a_hung_collector_and_keeps_events(
    collector: Collector, db_path: Path
) -> None:
    async def hang(_: ReceivedRequest) -> Reply:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    collector.responder = hang
    emitter = at.Emitter(collector.url, db_name=db_path, timeout=30)
    tracker = at.Tracker(emitter)
    try:
        for n in range(3):
            await tracker.track_page_view(page_url=f"https://a/{n}")
        started = time.monotonic()
        left = await tracker.flush(timeout=0.5)
        elapsed = time.monotonic() - started
        assert left == 3
        assert elapsed < 3
    finally:
        started = time.monotonic()
        await tracker.aclose()
        assert time.monotonic() - started < 3
    assert await stored_count(db_path) == 3


async def test_leaving_async_with_is_bounded_by_close_timeout(
    collector: Collector, db_path: Path
) -> None:
    async def hang(_: ReceivedRequest) -> Reply:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    collector.responder = hang
    emitter = at.Emitter(collector.url, db_name=db_path, timeout=30, close_timeout=0.5)
    started = time.monotonic()
    async with at.Tracker(emitter) as tracker:
        await tracker.track_page_view(page_url="https://a/")
    assert time.monotonic() - started < 3
    assert await stored_count(db_path) == 1


async def test_track_returns_only_after_the_event_is_in_sqlite(
    collector: Collector, db_path: Path
) -> None:
    collector.responder = lambda _: Reply(500)
    emitter = at.Emitter(collector.url, db_name=db_path, retry=NO_AUTO_RETRY)
    tracker = at.Tracker(emitter)
    try:
        eid = await tracker.track_page_view(page_url="https://a/")
        async with at.SQLiteStorage(db_path) as other:
            assert eid in {row.event["eid"] for row in await other.get_all_event_rows()}
    finally:
        await tracker.aclose()


async def test_track_never_raises_delivery_errors(db_path: Path) -> None:
    emitter = at.Emitter("http://127.0.0.1:9", db_name=db_path, retry=NO_AUTO_RETRY)
    tracker = at.Tracker(emitter)
    try:
        for n in range(3):
            await tracker.track_page_view(page_url=f"https://a/{n}")
        await tracker.flush()
    finally:
        await tracker.aclose()
    assert await stored_count(db_path) == 3


async def test_events_tracked_while_the_loop_finishes_are_still_sent(
    collector: Collector, db_path: Path
) -> None:
    emitter = at.Emitter(collector.url, db_name=db_path)
    async with at.Tracker(emitter) as tracker:
        for n in range(50):
            await tracker.track_page_view(page_url=f"https://a/{n}")
            if n % 7 == 0:
                await asyncio.sleep(0)
        # No flush: the emitter alone must send everything, however the tracks interleaved.
        received = await collector.wait_for_events(50, timeout=10)
        assert len({event.payload["eid"] for event in received}) == 50


async def test_a_loop_of_tracks_on_memory_storage_lets_other_tasks_and_delivery_run(
    collector: Collector,
) -> None:
    """MemoryStorage never suspends, so the emitter itself must hand the loop over:
    a caller that only awaits track_* calls must not starve the send task or others."""
    turns = 0
    tracking = True

    async def other_task() -> None:
        nonlocal turns
        while tracking:
            turns += 1
            await asyncio.sleep(0)

    async with at.Tracker(at.Emitter(collector.url, storage=at.MemoryStorage())) as tracker:
        other = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        tracked = 0
        while tracker.emitter.stats().sent == 0 and tracked < 50_000:
            await tracker.track_struct_event("shop", "view", f"item-{tracked}")
            tracked += 1
        tracking = False
        delivered_while_tracking = tracker.emitter.stats().sent
        await other
        await tracker.flush()
    assert delivered_while_tracking > 0
    assert turns > 1
    received = await collector.wait_for_events(tracked, timeout=10)
    assert len({event.payload["eid"] for event in received}) == tracked


async def test_many_looping_trackers_some_cancelled_lose_no_returned_event(
    collector: Collector,
) -> None:
    """Tasks looping on track_* over MemoryStorage wait their turns in a queue; cancelling
    some of them while they wait must neither stall the others nor lose or repeat an
    event whose track_* call returned."""
    returned: list[str] = []
    a_quarter_in = asyncio.Event()

    async def loop_tracking(worker: int) -> None:
        for n in range(40):
            returned.append(await tracker.track_struct_event("w", "loop", f"{worker}-{n}"))
            if len(returned) >= 600:
                a_quarter_in.set()

    async with at.Tracker(at.Emitter(collector.url, storage=at.MemoryStorage())) as tracker:
        workers = [asyncio.create_task(loop_tracking(k)) for k in range(60)]
        await a_quarter_in.wait()
        for task in workers[::6]:
            task.cancel()
        outcomes = await asyncio.gather(*workers, return_exceptions=True)
        await tracker.flush()
    cancelled = [o for o in outcomes if isinstance(o, asyncio.CancelledError)]
    assert 0 < len(cancelled) <= 10
    assert all(o is None for o in outcomes if not isinstance(o, asyncio.CancelledError))
    received = await collector.wait_for_events(len(returned), timeout=10)
    eids = [event.payload["eid"] for event in received]
    assert sorted(eids) == sorted(returned)
