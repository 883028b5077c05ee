"""``Tracker([emitter, emitter, ...])``: each emitter stores and sends every event under
the same id, and one failing never keeps the others from it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from event_support import kept_tracker, rows

import asynctracker as at
from asynctracker.collector import Collector


class BrokenStorage(at.MemoryStorage):
    """A storage whose inserts fail, like a full disk."""

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        raise OSError("disk full")

    async def add_event_rows(self, payloads: Sequence[Mapping[str, str]]) -> int:
        raise OSError("disk full")


async def test_every_emitter_stores_every_event_under_the_same_id() -> None:
    first, second = at.MemoryStorage(), at.MemoryStorage()
    async with kept_tracker(first, second) as (tracker, _):
        ids = [
            await tracker.track(at.PageView("https://a/")),
            await tracker.track_struct_event("c", "a"),
            await tracker.track_ecommerce_transaction(
                "o-1", 10, items=[at.EcommerceItem("sku", 5, 2)]
            ),
        ]
        stored = [await rows(first), await rows(second)]
    assert stored[0] == stored[1]
    assert [event["e"] for event in stored[0]] == ["pv", "se", "tr", "ti"]
    assert [event["eid"] for event in stored[0]][:3] == ids


@pytest.mark.parametrize("broken_at", [0, 1], ids=["first-broken", "second-broken"])
async def test_a_failing_storage_never_keeps_the_others_from_the_event(broken_at: int) -> None:
    storages = [at.MemoryStorage(), at.MemoryStorage()]
    storages[broken_at] = BrokenStorage()
    healthy = storages[1 - broken_at]
    async with kept_tracker(*storages) as (tracker, _):
        with pytest.raises(at.StorageError, match="disk full"):
            await tracker.track(at.PageView("https://a/"))
        with pytest.raises(at.StorageError, match="disk full"):
            await tracker.track_ecommerce_transaction("o", 1, items=[at.EcommerceItem("s", 1)])
        assert [event["e"] for event in await rows(healthy)] == ["pv", "tr", "ti"]


async def test_the_first_error_is_raised_when_several_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with kept_tracker(BrokenStorage(), BrokenStorage(), at.MemoryStorage()) as (
        tracker,
        storages,
    ):
        await tracker.emitters[1].aclose()
        with pytest.raises(at.StorageError, match="disk full"):
            await tracker.track(at.PageView("https://a/"))
        assert len(await rows(storages[2])) == 1
    assert "also failed to store events" in caplog.text


async def test_a_closed_emitter_raises_after_the_open_one_stored_the_event() -> None:
    async with kept_tracker(at.MemoryStorage(), at.MemoryStorage()) as (tracker, storages):
        await tracker.emitters[0].aclose()
        with pytest.raises(at.ClosedError):
            await tracker.track(at.PageView("https://a/"))
        assert len(await rows(storages[1])) == 1
        await tracker.emitters[1].aclose()
        with pytest.raises(at.ClosedError, match="closed"):
            await tracker.track(at.PageView("https://a/"))


@pytest.mark.parametrize("cancel_after", [0.0, 0.002], ids=["before-storing", "while-storing"])
async def test_a_cancelled_call_leaves_every_emitter_with_the_same_events(
    tmp_path: Path, cancel_after: float
) -> None:
    """A call cancelled while one emitter stores its event may have stored it there:
    the others store it too, and the caller still sees the cancellation."""
    down = "http://127.0.0.1:9"
    emitters = [
        at.Emitter(
            down,
            storage=at.SQLiteStorage(tmp_path / f"{name}.db", inline_writes=False),
            retry=at.RetryPolicy(auto_retry=False),
        )
        for name in ("a", "b")
    ]
    async with at.Tracker(emitters) as tracker:
        for _ in range(5):
            calls = [asyncio.ensure_future(tracker.track_struct_event("c", "a")) for _ in range(50)]
            await asyncio.sleep(cancel_after)
            for call in calls[::2]:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        stored = [await emitter.storage.count() for emitter in emitters]  # type: ignore[attr-defined]
        ids = [
            sorted(row.event["eid"] for row in await emitter.storage.get_all_event_rows())
            for emitter in emitters
        ]
    assert stored[0] == stored[1] > 0
    assert ids[0] == ids[1]


async def test_events_reach_two_collectors_and_an_outage_of_one_holds_back_only_its_own(
    tmp_path: Path,
) -> None:
    async with Collector() as up, Collector() as down:
        await down.stop()
        emitters = [
            at.Emitter(up.url, db_name=tmp_path / "up.db"),
            at.Emitter(
                down.url, db_name=tmp_path / "down.db", retry=at.RetryPolicy(auto_retry=False)
            ),
        ]
        async with at.Tracker(emitters, namespace="two") as tracker:
            eid = await tracker.track(at.PageView("https://a/"))
            assert await tracker.flush(10) == 1  # the outage's event waits in its SQLite file
            [received] = await up.wait_for_events(1)
            assert received.payload["eid"] == eid
            await down.start()
            assert await tracker.flush(10) == 0
            [late] = await down.wait_for_events(1)
            assert late.payload == {**received.payload, "stm": late.payload["stm"]}
        assert all(emitter.closed for emitter in tracker.emitters)


async def test_async_with_opens_every_emitter_and_closes_them_all() -> None:
    emitters = [at.Emitter("collector.test", storage=at.MemoryStorage()) for _ in range(3)]
    tracker = at.Tracker(emitters)
    async with tracker:
        assert all(not emitter.closed for emitter in emitters)
    assert all(emitter.closed for emitter in emitters)


def test_one_emitter_is_still_tracker_emitter_and_several_are_tracker_emitters() -> None:
    one = at.Emitter("collector.test", storage=at.MemoryStorage())
    other = at.Emitter("collector.test", storage=at.MemoryStorage())
    tracker = at.Tracker(one)
    assert tracker.emitter is one
    assert tracker.emitters == (one,)
    assert tracker.add_emitter(other) is tracker
    assert tracker.emitters == (one, other)
    with pytest.raises(at.ConfigurationError, match="2 emitters"):
        _ = tracker.emitter


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param([], "a list of them", id="empty"),
        pytest.param("https://collector", "namespace= by keyword", id="a-string"),
        pytest.param([object()], r"emitters\[0\]", id="not-an-emitter"),
        pytest.param(None, "a list of them", id="none"),
    ],
)
def test_bad_emitters_are_a_configuration_error(given: object, message: str) -> None:
    with pytest.raises(at.ConfigurationError, match=message):
        at.Tracker(given)  # type: ignore[arg-type]


def test_the_same_emitter_twice_is_refused() -> None:
    emitter = at.Emitter("collector.test", storage=at.MemoryStorage())
    with pytest.raises(at.ConfigurationError, match="twice"):
        at.Tracker([emitter, emitter])
    with pytest.raises(at.ConfigurationError, match="twice"):
        at.Tracker(emitter).add_emitter(emitter)
