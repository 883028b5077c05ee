"""Fixtures shared by the suite: a real loopback collector, temp SQLite paths, Iglu checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from iglu import IGLU_DIR

from asynctracker._collector import Collector


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite file path under pytest's temp dir (never the working directory)."""
    return tmp_path / "events.db"


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    """A real Snowplow collector listening on 127.0.0.1 on a free port."""
    async with Collector() as running:
        yield running


@pytest.fixture(scope="session", autouse=True)
def _iglu_present() -> None:
    assert IGLU_DIR.is_dir(), f"Iglu Central schemas expected at {IGLU_DIR}"
