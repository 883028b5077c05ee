"""max_events bounds the queue even when the oldest events are being sent.

A real collector on 127.0.0.1 holds the first request open, so the stored rows are
claimed (in flight) when the queue fills up; real SQLite files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply


async def test_drop_oldest_drops_new_events_when_every_stored_event_is_being_sent(
    collector: Collector, tmp_path: Path
) -> None:
    received = asyncio.Event()
    answer = asyncio.Event()

    async def hold_first_request(request: ReceivedRequest) -> Reply | None:
        received.set()
        await answer.wait()
        return None

    collector.responder = hold_first_request
    dropped: list[at.CallbackResult] = []
    emitter = at.Emitter(
        collector.url,
        storage=at.SQLiteStorage(tmp_path / "bound.db"),
        max_events=5,
        overflow="drop_oldest",
        callback=lambda ok, bad: dropped.extend(r for r in bad if r.dropped),
    )
    async with at.Tracker(emitter, app_id="bound") as tracker:
        for value in range(5):
            await tracker.track_struct_event("c", "kept", value=value)
        await asyncio.wait_for(received.wait(), 5)  # all five are in flight now
        for value in range(3):
            await tracker.track_struct_event("c", "over", value=value)
        assert len(await emitter.storage.get_all_event_rows()) == 5
        assert emitter.stats().dropped == 3
        assert sum(result.count for result in dropped if result.status == 0) == 3
        answer.set()
        assert await tracker.flush(timeout=5) == 0
    assert sorted(event.payload["se_ac"] for event in collector.events) == ["kept"] * 5
