"""Helpers for the Event API tests: a tracker whose events stay in memory, and decoding.

``kept_tracker`` builds a Tracker over MemoryStorage emitters whose collector (an
in-memory transport) answers 500 without retrying, so every stored event stays where
the test can read it; delivery itself is tested against real collectors elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

import asynctracker as at
from asynctracker._validate import decode_event

CTX = at.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"id": 7, "name": "Zoë"})
CLICK = at.SelfDescribingJson("iglu:com.acme/click/jsonschema/1-0-0", {"x": 1, "ok": True})
SCREEN_ID = "2f1c6b0e-1b2a-4c3d-8e4f-5a6b7c8d9e0f"
PREVIOUS_ID = "0b8f3c2a-7d6e-4f5a-9b8c-1d2e3f4a5b6c"
TTM = 1_699_999_999_000


def emitter(storage: at.Storage, client: httpx.AsyncClient) -> at.Emitter:
    return at.Emitter(
        "collector.test",
        storage=storage,
        http_client=client,
        retry=at.RetryPolicy(auto_retry=False),
    )


@contextlib.asynccontextmanager
async def kept_tracker(
    *storages: at.Storage, **options: Any
) -> AsyncIterator[tuple[at.Tracker, list[at.Storage]]]:
    """A tracker over one emitter per storage (one MemoryStorage by default)."""
    kept = list(storages) or [at.MemoryStorage()]
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(500))
    ) as client:
        emitters = [emitter(storage, client) for storage in kept]
        options.setdefault("namespace", "ns")
        options.setdefault("app_id", "app")
        tracker = at.Tracker(emitters if len(emitters) > 1 else emitters[0], **options)
        try:
            yield tracker, kept
        finally:
            await tracker.aclose()


async def rows(storage: at.Storage) -> list[dict[str, str]]:
    return [row.event for row in await storage.get_all_event_rows()]


async def decoded(storage: at.Storage) -> list[dict[str, Any]]:
    """The stored events, ``ue_px``/``cx`` & co. decoded (``unstruct_event``, ``contexts``)."""
    return [decode_event(event) for event in await rows(storage)]
