"""Failure detail for dead-lettering: the callback gets the events, the reason, and
whether they will be retried (issue 15, point 3), against a real collector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import asynctracker as at
from asynctracker.collector import Collector, Reply

NO_AUTO_RETRY = at.RetryPolicy(auto_retry=False)


class Failures:
    def __init__(self) -> None:
        self.results: list[at.CallbackResult] = []

    def __call__(self, ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        self.results += failed


@pytest.mark.parametrize("request_type", ["POST", "GET"])
async def test_rejected_events_reach_the_callback_with_payloads_and_reason(
    collector: Collector, db_path: Path, request_type: str
) -> None:
    failures = Failures()
    collector.responder = lambda r: (
        Reply(422) if "rejected" in (r.body.decode() + r.query) else None
    )
    emitter = at.Emitter(
        collector.url,
        request_type=request_type,
        db_name=db_path,
        retry=NO_AUTO_RETRY,
        callback=failures,
        byte_limit_post=1,  # one event per request, however the send task batches them
    )
    async with at.Tracker(emitter) as tracker:
        bad = [await tracker.track_struct_event("shop", "rejected") for _ in range(2)]
        await tracker.track_struct_event("shop", "fine")
        assert await tracker.flush(timeout=10) == 0

    dropped = [r for r in failures.results if r.dropped]
    assert {r.reason for r in dropped} == {"rejected"}
    assert all(r.status == 422 and not r.will_retry for r in dropped)
    assert sorted(eid for r in dropped for eid in r.event_ids) == sorted(bad)
    assert all(e["se_ac"] == "rejected" for r in dropped for e in r.events)
    assert "422" in dropped[0].detail
    assert len(collector.good) == 1


async def test_failures_kept_for_retry_say_so_and_carry_their_events(
    collector: Collector, db_path: Path
) -> None:
    failures = Failures()
    collector.responder = lambda r: Reply(500)
    emitter = at.Emitter(collector.url, db_name=db_path, retry=NO_AUTO_RETRY, callback=failures)
    async with at.Tracker(emitter) as tracker:
        eid = await tracker.track_struct_event("shop", "view")
        assert await tracker.flush(timeout=10) == 1
    [result] = failures.results[-1:]
    assert result.will_retry
    assert not result.dropped
    assert result.reason == "failed"
    assert result.event_ids == (eid,)
    assert result.detail == "status 500"


async def test_overflow_drops_are_reported_with_their_reason(collector: Collector) -> None:
    failures = Failures()
    await collector.stop()
    emitter = at.Emitter(
        collector.url,
        storage=at.MemoryStorage(),
        max_events=2,
        overflow="drop_newest",
        retry=NO_AUTO_RETRY,
        callback=failures,
    )
    async with at.Tracker(emitter) as tracker:
        for n in range(5):
            await tracker.track_struct_event("shop", f"view-{n}")
    overflow = [r for r in failures.results if r.reason == "overflow"]
    assert overflow
    assert all(r.dropped and r.status == 0 and not r.will_retry for r in overflow)
    assert "queue full" in overflow[0].detail


async def test_results_still_compare_as_count_status_dropped() -> None:
    detailed = at.CallbackResult(1, 400, True, reason="rejected", events=({"eid": "x"},))
    assert detailed == at.CallbackResult(1, 400, dropped=True)
    assert detailed.event_ids == ("x",)


async def test_dead_lettered_events_replay_with_their_original_ids(
    collector: Collector, tmp_path: Path
) -> None:
    dead_letters = tmp_path / "dead.jsonl"

    def dead_letter(ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        with dead_letters.open("a") as file:
            for result in failed:
                if result.dropped:
                    for event in result.events:
                        file.write(json.dumps({"reason": result.reason, "event": event}) + "\n")

    collector.responder = lambda r: Reply(400)
    emitter = at.Emitter(collector.url, storage=at.MemoryStorage(), callback=dead_letter)
    async with at.Tracker(emitter) as tracker:
        eids = [await tracker.track_struct_event("shop", f"view-{n}") for n in range(3)]
        assert await tracker.flush(timeout=10) == 0
    assert collector.good == []

    collector.responder = None  # fixed: replay the file
    lines = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    async with at.Emitter(collector.url, storage=at.MemoryStorage()) as replay:
        await replay.add_many([line["event"] for line in lines])
        assert await replay.flush(timeout=10) == 0
    assert sorted(e.payload["eid"] for e in collector.good) == sorted(eids)
    assert all(e.valid for e in collector.good)
