"""Sharing the event loop: tracking callers queue for loop turns, in arrival order.

The budget per turn is time-based; these tests set it to zero (every turn is spent by
its first add), which makes the scheduling exact and the assertions free of timing.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

import asynctracker as at
from asynctracker import _turns
from asynctracker._collector import Collector


@pytest.fixture
def no_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_turns, "BUDGET", 0.0)


async def test_callers_beyond_the_budget_add_one_per_turn_round_robin(
    collector: Collector, no_budget: None
) -> None:
    # MemoryStorage stores within the add, so the order in which track_* calls return
    # is the order of the adds.
    order: list[str] = []
    added_by_turn: list[int] = []
    done = False

    async def watch() -> None:  # runs once per loop turn
        while not done:
            added_by_turn.append(len(order))
            await asyncio.sleep(0)

    async def producer(tracker: at.Tracker, name: str) -> None:
        for n in range(20):
            await tracker.track_struct_event("loop", name, str(n))
            order.append(name)

    async with at.Tracker(at.Emitter(collector.url, storage=at.MemoryStorage())) as tracker:
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        await asyncio.gather(*(producer(tracker, f"p{k}") for k in range(10)))
        done = True
        await watcher

    assert len(order) == 200
    assert max(b - a for a, b in itertools.pairwise(added_by_turn)) == 1
    # In arrival order: after the first add (p0's, which found the turn unspent), every
    # producer adds once before any adds again.
    rounds = [order[start : start + 10] for start in range(1, 191, 10)]
    assert all(sorted(names) == [f"p{k}" for k in range(10)] for names in rounds), order
    received = await collector.wait_for_events(200)
    assert len({event.payload["eid"] for event in received}) == 200


async def test_a_cancelled_waiting_caller_stores_nothing_and_blocks_no_one(
    collector: Collector, no_budget: None
) -> None:
    storage = at.MemoryStorage()
    async with at.Tracker(at.Emitter(collector.url, storage=storage)) as tracker:
        calls = [
            asyncio.create_task(tracker.track_page_view(page_url=f"https://a/{n}"))
            for n in range(5)
        ]
        await asyncio.sleep(0)  # all started; the first added, the others wait in line
        calls[2].cancel()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        assert isinstance(results[2], asyncio.CancelledError)
        await tracker.flush()
    received = await collector.wait_for_events(4)
    assert sorted(event.payload["url"] for event in received) == [
        f"https://a/{n}" for n in (0, 1, 3, 4)
    ]


def test_a_turn_counted_on_a_closed_loop_does_not_hold_up_the_next_loop(
    no_budget: None,
) -> None:
    budget = _turns.TurnBudget()

    async def add_and_leave() -> None:
        asyncio.get_running_loop().stop()  # after this step: the next turn never runs
        budget.counted()

    first = asyncio.new_event_loop()
    first.run_until_complete(add_and_leave())
    first.close()
    assert budget.spent()

    async def add_on_a_new_loop() -> None:
        await asyncio.wait_for(budget.wait(), timeout=5)
        budget.counted()

    asyncio.run(add_on_a_new_loop())
