"""Fixtures shared by the suite: a real loopback collector, temp SQLite paths, Iglu checks,
and an httpx client whose collector refuses everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from iglu import IGLU_DIR, IGLU_FOUND, IGLU_MISSING_REASON, IGLU_REQUIRED
from sync_support import ThreadedCollector

from asynctracker.collector import Collector


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """main() configures the "asynctracker" logger for the process: put it back."""
    logger = logging.getLogger("asynctracker")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite file path under pytest's temp dir (never the working directory)."""
    return tmp_path / "events.db"


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    """A real Snowplow collector listening on 127.0.0.1 on a free port."""
    async with Collector() as running:
        yield running


@pytest.fixture
def threaded_collector() -> Iterator[ThreadedCollector]:
    """A real collector on 127.0.0.1 served from a thread of its own, for plain threads
    and subprocesses (the test itself runs no event loop)."""
    running = ThreadedCollector()
    yield running
    running.close()


@pytest.fixture
async def refusing_client() -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose every request to ``collector.test`` respx answers 500.

    For tests that read what an emitter stored: handed this client (with automatic
    retries off), an emitter keeps every event. The respx router is the client's
    transport (respx without patching httpx), so nothing else in the test is
    intercepted and nothing leaves the process; a request to any other host fails the
    send as unmocked.
    """
    collector = respx.Router(assert_all_called=False)
    collector.route(host="collector.test").respond(500)
    async with httpx.AsyncClient(transport=httpx.MockTransport(collector.async_handler)) as client:
        yield client


def pytest_report_header() -> str:
    """Say up front whether the Iglu Central checks run, and why not."""
    if IGLU_FOUND:
        return f"iglu: validating against Iglu Central schemas at {IGLU_DIR}"
    return f"iglu: skipped. {IGLU_MISSING_REASON}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """CI sets ASYNCTRACKER_REQUIRE_IGLU=1: there a missing copy is an error, not a skip."""
    if IGLU_REQUIRED and not IGLU_FOUND:
        raise pytest.UsageError(f"ASYNCTRACKER_REQUIRE_IGLU is set but {IGLU_MISSING_REASON}")
