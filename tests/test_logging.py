"""The logging policy (README, "Logging"), asserted with caplog against a real collector
that is down, then up."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import asynctracker as at
from asynctracker import _health
from asynctracker.collector import Collector

NO_AUTO_RETRY = at.RetryPolicy(auto_retry=False)


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "asynctracker" and r.levelno == level
    ]


async def test_one_warning_when_delivery_fails_then_counted_repeats_then_info_on_recovery(
    collector: Collector,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="asynctracker")
    host = collector.url.split("//")[1]
    await collector.stop()
    emitter = at.Emitter(collector.url, db_name=db_path, retry=NO_AUTO_RETRY)
    async with at.Tracker(emitter) as tracker:
        for n in range(3):
            await tracker.track_struct_event("shop", f"view-{n}")
        for _ in range(4):
            assert await tracker.flush(timeout=10) == 3

        [warning] = lines(caplog, logging.WARNING)  # one line, not one per attempt
        assert f"delivery to http://{host} is failing" in warning
        assert "ConnectError" in warning
        assert "Connection refused" in warning
        assert lines(caplog, logging.INFO) == []

        monkeypatch.setattr(_health, "SUMMARY_INTERVAL", 0.0)  # the interval is over
        assert await tracker.flush(timeout=10) == 3
        repeat = lines(caplog, logging.WARNING)[-1]
        assert "still failing" in repeat
        assert "more failed attempt(s)" in repeat
        assert "3 event(s) waiting" in repeat

        await collector.start()  # same port: the outage ends
        assert await tracker.flush(timeout=10) == 0
    [recovered] = lines(caplog, logging.INFO)
    assert f"delivery to http://{host} recovered after" in recovered
    assert not any("closing with" in line for line in lines(caplog, logging.WARNING))
    assert len(collector.good) == 3


async def test_closing_with_undelivered_memory_events_warns_they_are_lost(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    await collector.stop()
    emitter = at.Emitter(collector.url, storage=at.MemoryStorage(), retry=NO_AUTO_RETRY)
    async with at.Tracker(emitter) as tracker:
        for n in range(2):
            await tracker.track_struct_event("shop", f"view-{n}")
        await tracker.flush(timeout=5)
    closing = [line for line in lines(caplog, logging.WARNING) if "closing with" in line]
    assert closing == [
        f"closing with 2 undelivered events, lost: MemoryStorage keeps nothing after close "
        f"(collector {collector.url})"
    ]


async def test_closing_with_undelivered_sqlite_events_says_where_they_wait(
    collector: Collector, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await collector.stop()
    emitter = at.Emitter(collector.url, db_name=db_path, retry=NO_AUTO_RETRY)
    async with at.Tracker(emitter) as tracker:
        await tracker.track_struct_event("shop", "view")
        await tracker.flush(timeout=5)
    [closing] = [line for line in lines(caplog, logging.WARNING) if "closing with" in line]
    assert f"closing with 1 undelivered event; they wait in {db_path}" in closing


async def test_overflow_drops_are_summarised_not_logged_one_line_each(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    await collector.stop()
    emitter = at.Emitter(
        collector.url, storage=at.MemoryStorage(), max_events=10, retry=NO_AUTO_RETRY
    )
    async with at.Tracker(emitter) as tracker:
        for n in range(100):
            await tracker.track_struct_event("shop", f"view-{n}")
        dropped = emitter.stats().dropped
        assert dropped >= 80
    drops = [line for line in lines(caplog, logging.WARNING) if "dropped" in line]
    assert drops[0] == "dropped 1 event(s) undelivered: queue full (drop_oldest)"
    assert len(drops) == 2  # the first drop, then one summary (here: on close)
    assert drops[1].startswith(f"dropped {dropped - 1} more event(s) undelivered in the last")


async def test_the_library_installs_no_handler() -> None:
    emitter = at.Emitter("http://127.0.0.1:9", storage=at.MemoryStorage())
    await emitter.aclose()
    assert logging.getLogger("asynctracker").handlers == []


def test_the_log_counts_failed_event_sends_as_stats_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """stats().failed counts failed event sends (120 events failing 5 times: 600); the
    log's attempts come with that same figure, so the two never seem to disagree."""
    now = [0.0]
    log = _health.DeliveryLog("http://collector.test", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="asynctracker"):
        for _ in range(5):
            log.failed("status 503", waiting=120, sends=120)
            now[0] += 61
        log.delivered()
    summary = [r.getMessage() for r in caplog.records if "still failing" in r.getMessage()]
    assert "5 attempts, 600 failed event sends" in summary[-1]
    recovered = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    assert recovered == [
        "delivery to http://collector.test recovered after 5 failed attempt(s) "
        "(600 failed event sends) over 305.0 s (last cause: status 503)"
    ]
