"""Sender: one iteration's rows out as concurrent HTTP requests, one Outcome per request.

The emitter decides what happens to rows (delete, drop, retry); this module only talks
to httpx and reports what each request got back. It never raises for delivery
problems: no response is status -1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from ._wire import (
    POST_HEADERS,
    Endpoints,
    chunk_rows,
    get_query,
    now_ms,
    parse_retry_after,
    post_body,
)
from .storage.base import EventRow

__all__ = ["NO_RESPONSE", "Outcome", "Sender"]

logger = logging.getLogger("asynctracker")

#: Outcome.status (and CallbackResult.status) when no HTTP response came back.
NO_RESPONSE = -1


@dataclass(slots=True)
class Outcome:
    """What one request got back, and the rows it carried."""

    rows: Sequence[EventRow]
    status: int
    retry_after: float | None = None


class Sender:
    """Sends rows as POST chunks (never over ``byte_limit_post``) or one GET per row.

    At most ``max_concurrent`` requests are in flight: an iteration may hold hundreds
    of GETs, and beyond the client's connection pool they would time out waiting for a
    connection and look like a dead collector.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoints: Endpoints,
        *,
        request_type: Literal["GET", "POST"],
        byte_limit_post: int,
        max_concurrent: int,
    ) -> None:
        self._client = client
        self._endpoints = endpoints
        self._request_type = request_type
        self._byte_limit_post = byte_limit_post
        self._max_concurrent = max_concurrent
        self._in_flight: asyncio.Semaphore | None = None

    async def send(self, rows: Sequence[EventRow]) -> list[Outcome]:
        """Send all rows concurrently; one Outcome per request that was made."""
        if self._request_type == "POST":
            sends = [self._post(chunk) for chunk in chunk_rows(rows, self._byte_limit_post)]
        else:
            sends = [self._get(row) for row in rows]
        return [outcome for batch in await asyncio.gather(*sends) for outcome in batch]

    async def _post(self, rows: list[EventRow]) -> list[Outcome]:
        status, retry_after = await self._request(
            "POST", self._endpoints.post, content=post_body(rows, now_ms())
        )
        if status == 413 and len(rows) > 1:
            # The collector's body limit is below ours: halve until it accepts.
            middle = len(rows) // 2
            halves = await asyncio.gather(self._post(rows[:middle]), self._post(rows[middle:]))
            return halves[0] + halves[1]
        return [Outcome(rows, status, retry_after)]

    async def _get(self, row: EventRow) -> list[Outcome]:
        url = f"{self._endpoints.get}?{get_query(row, now_ms())}"
        status, retry_after = await self._request("GET", url)
        return [Outcome([row], status, retry_after)]

    async def _request(
        self, method: str, url: str, *, content: bytes | None = None
    ) -> tuple[int, float | None]:
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(self._max_concurrent)
        try:
            async with self._in_flight:
                response = await self._client.request(
                    method,
                    url,
                    content=content,
                    headers=POST_HEADERS if content is not None else None,
                )
        except httpx.HTTPError as exc:
            logger.debug("%s %s failed: %r", method, url, exc)
            return NO_RESPONSE, None
        status = response.status_code
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        return status, retry_after
