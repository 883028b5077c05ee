"""Fixtures shared by the suite: a real loopback collector, temp SQLite paths, Iglu checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from iglu import IGLU_DIR, IGLU_FOUND, IGLU_MISSING_REASON, IGLU_REQUIRED

from asynctracker.collector import Collector


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite file path under pytest's temp dir (never the working directory)."""
    return tmp_path / "events.db"


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    """A real Snowplow collector listening on 127.0.0.1 on a free port."""
    async with Collector() as running:
        yield running


def pytest_report_header() -> str:
    """Say up front whether the Iglu Central checks run, and why not."""
    if IGLU_FOUND:
        return f"iglu: validating against Iglu Central schemas at {IGLU_DIR}"
    return f"iglu: skipped. {IGLU_MISSING_REASON}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """CI sets ASYNCTRACKER_REQUIRE_IGLU=1: there a missing copy is an error, not a skip."""
    if IGLU_REQUIRED and not IGLU_FOUND:
        raise pytest.UsageError(f"ASYNCTRACKER_REQUIRE_IGLU is set but {IGLU_MISSING_REASON}")
