"""Support for the asynctracker.sync suites: a collector that plain threads and other
processes can send to, and a count of what a SQLite queue still holds."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from asynctracker.collector import Collector

_T = TypeVar("_T")


class ThreadedCollector:
    """A Collector running on an event loop in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.collector = self._call(self._start())

    async def _start(self) -> Collector:
        collector = Collector()
        await collector.__aenter__()
        return collector

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    @property
    def url(self) -> str:
        return self.collector.url

    def actions(self) -> list[str]:
        return sorted(
            event.payload.get("se_ac", event.payload["e"]) for event in self.collector.events
        )

    def close(self) -> None:
        self._call(self.collector.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def stored(path: Path) -> int:
    """How many events the SQLite queue at ``path`` holds."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def page_views(collector: Collector) -> list[tuple[str, str | None]]:
    """The page views a collector received: (url, referrer), sorted."""
    return sorted(
        (event.payload["url"], event.payload.get("refr"))
        for event in collector.events
        if event.payload["e"] == "pv"
    )
