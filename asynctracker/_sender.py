"""Sender: one iteration's rows out as concurrent HTTP requests, one Outcome per request.

The send loop decides what happens to rows (delete, drop, retry) and how POST rows are
chunked; this module only talks to httpx and reports what each request got back. It
never raises for delivery problems: no response is status -1, a request that could not
even be built (an event that cannot be URL-encoded, a GET over ``byte_limit_get``) is
status 0 with ``drop`` set. Each request is built and sent inside its own error
handling, so one bad event never affects the others of its iteration.

The status line decides: an answer's body is read only up to ``MAX_ANSWER_BYTES`` (a
collector answers "ok" or a pixel) and discarded, so a collector or proxy answering
with a huge or endless body costs no memory and cannot turn a 200 into a timeout.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
import httpx

from ._wire import POST_HEADERS, Endpoints, get_query, now_ms, parse_retry_after, post_body, scrub
from .storage.base import EventRow

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_REDIRECTS",
    "NOT_SENT",
    "NO_RESPONSE",
    "Outcome",
    "Sender",
    "no_cookies",
]

logger = logging.getLogger("asynctracker")

#: Outcome.status (and CallbackResult.status) when no HTTP response came back.
NO_RESPONSE = -1
#: Outcome.status when no request was made (the request could not be built).
NOT_SENT = 0
#: Redirects followed per request on the owned client before giving up (retryable).
MAX_REDIRECTS = 5
#: The most bytes of an answer's body read (then the connection is closed).
MAX_ANSWER_BYTES = 64 * 1024
# Seconds an answer's body may take to arrive, once its status line is in.
_BODY_TIME = 1.0
# Answers that re-send the same request elsewhere. 301/302 keep the method and body
# too: a POST turned into an empty GET (what browsers do) could be answered 2xx and
# would delete events that never arrived. 303 and the rest are not followed.
_FOLLOWED = frozenset({301, 302, 307, 308})
# Headers never carried to another origin by a redirect.
_ORIGIN_BOUND = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(slots=True)
class Outcome:
    """What one request got back, and the rows it carried.

    ``error`` says why it failed (exception or status, never credentials); ``reached``
    is False when the collector was never reached (connection refused, connect
    timeout); ``drop`` is the reason code when the rows can never be sent
    ("too_large", "unsendable").
    """

    rows: Sequence[EventRow]
    status: int
    retry_after: float | None = None
    error: str = ""
    reached: bool = True
    drop: str | None = None


class Sender:
    """Sends rows as POST chunks (never over ``byte_limit_post``) or one GET per row.

    At most ``max_concurrent`` requests are in flight: an iteration may hold hundreds
    of GETs, and beyond the client's connection pool they would time out waiting for a
    connection and look like a dead collector. ``deadline`` bounds each request as a
    whole (connect, send, every byte of the answer, redirects): httpx's own timeouts
    are per read, so a collector trickling one byte at a time would never trip them.
    ``follow_redirects`` is for the owned client only; a user's client is left as
    configured, and a 3xx it returns is a (retryable) failure either way.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoints: Endpoints,
        *,
        request_type: Literal["GET", "POST"],
        byte_limit_post: int,
        max_concurrent: int,
        byte_limit_get: int | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        follow_redirects: bool = False,
    ) -> None:
        self._client = client
        self._endpoints = endpoints
        self._post_url = httpx.URL(endpoints.post)  # parsed once, not per request
        self.request_type = request_type
        self.byte_limit = byte_limit_post
        self._byte_limit_get = byte_limit_get
        self._max_concurrent = max_concurrent
        self._headers = dict(headers or {})
        self._post_headers = {**self._headers, **POST_HEADERS}
        self._deadline = deadline
        self._follow = follow_redirects
        self._in_flight: asyncio.Semaphore | None = None

    async def send_chunks(self, chunks: Sequence[list[EventRow]]) -> list[Outcome]:
        """POST each chunk, concurrently; one Outcome per request made."""
        return _flat(await asyncio.gather(*[self._post(chunk) for chunk in chunks]))

    async def send_each(self, rows: Sequence[EventRow]) -> list[Outcome]:
        """GET each row, concurrently; one Outcome per request made."""
        return _flat(await asyncio.gather(*[self._get(row) for row in rows]))

    async def _post(self, rows: list[EventRow]) -> list[Outcome]:
        try:
            body = post_body(rows, now_ms())
        except ValueError as exc:  # UnicodeEncodeError: text a custom storage kept
            if len(rows) > 1:
                return await self._halves(rows)
            return [Outcome(rows, NOT_SENT, error=_describe(exc), drop="unsendable")]
        outcome = await self._request(rows, "POST", self._post_url, content=body)
        if outcome.status == 413 and len(rows) > 1:
            # The collector's body limit is below ours: halve until it accepts.
            return await self._halves(rows)
        return [outcome]

    async def _halves(self, rows: list[EventRow]) -> list[Outcome]:
        middle = len(rows) // 2
        halves = await asyncio.gather(self._post(rows[:middle]), self._post(rows[middle:]))
        return halves[0] + halves[1]

    async def _get(self, row: EventRow) -> list[Outcome]:
        try:
            query = get_query(row, now_ms())
            # Parsed once, here, so httpx's own checks (URL length, characters) fail
            # inside this event's handling; the request is sent with this very URL.
            url = httpx.URL(f"{self._endpoints.get}?{query}")
        except (ValueError, httpx.InvalidURL) as exc:  # UnicodeEncodeError is a ValueError
            return [Outcome([row], NOT_SENT, error=_describe(exc), drop="unsendable")]
        if self._byte_limit_get is not None and len(query) > self._byte_limit_get:
            error = f"GET query of {len(query)} bytes is over byte_limit_get={self._byte_limit_get}"
            return [Outcome([row], NOT_SENT, error=error, drop="too_large")]
        return [await self._request([row], "GET", url)]

    async def _request(
        self,
        rows: Sequence[EventRow],
        method: str,
        url: httpx.URL,
        *,
        content: bytes | None = None,
    ) -> Outcome:
        """The Outcome of one request carrying ``rows``."""
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(self._max_concurrent)
        headers = self._post_headers if content is not None else self._headers
        async with self._in_flight:
            try:
                return await self._exchange(rows, method, url, content, headers)
            except TimeoutError:
                error = f"no answer within the {self._deadline:g} s timeout"
                return Outcome(rows, NO_RESPONSE, error=error)
            except httpx.HTTPError as exc:
                logger.debug("%s %s failed: %r", method, self._endpoints.shown, exc)
                reached = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                return Outcome(
                    rows, NO_RESPONSE, error=self._scrub(_describe(exc)), reached=reached
                )
            except (ValueError, httpx.InvalidURL) as exc:  # e.g. a bad redirect target
                return Outcome(rows, NO_RESPONSE, error=self._scrub(_describe(exc)))

    async def _exchange(
        self,
        rows: Sequence[EventRow],
        method: str,
        url: httpx.URL,
        content: bytes | None,
        headers: Mapping[str, str],
    ) -> Outcome:
        """One request, following redirects (owned client only), to its final answer.

        ``deadline`` bounds the whole (connect, send, every status line, redirects):
        httpx's own timeouts are per read, so a trickling answer never trips them.
        Raises TimeoutError when it passes before the final status line."""
        target = url
        expires = None if self._deadline is None else anyio.current_time() + self._deadline
        for _ in range(MAX_REDIRECTS + 1):
            request = self._client.build_request(method, target, content=content, headers=headers)
            if expires is None:
                response = await self._client.send(request, stream=True)
            else:
                with anyio.fail_after(max(expires - anyio.current_time(), 0)):
                    response = await self._client.send(request, stream=True)
            await _discard_body(response)
            status = response.status_code
            location = response.headers.get("location")
            if not self._follow or status not in _FOLLOWED or not location:
                break
            following = target.join(location)
            if following.scheme not in ("http", "https"):
                break
            if (following.scheme, following.host, following.port) != (
                target.scheme,
                target.host,
                target.port,
            ):
                headers = {k: v for k, v in headers.items() if k.lower() not in _ORIGIN_BOUND}
            target = following
        else:
            error = f"more than {MAX_REDIRECTS} redirects (status {status})"
            return Outcome(rows, status, error=error)
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        error = ""
        if not 200 <= status < 300:
            error = f"status {status}"
            if 300 <= status < 400:
                error += " (a redirect left unfollowed" + (")" if location else ", no Location)")
        return Outcome(rows, status, retry_after, error)

    def _scrub(self, text: str) -> str:
        """Keep a password in the collector URL out of error texts."""
        return scrub(text, self._endpoints.post)


async def _discard_body(response: httpx.Response) -> None:
    """Read at most MAX_ANSWER_BYTES of the body, briefly, then close the response.
    The status line already decided; a body too large or too slow only costs the
    connection (closed, not reused)."""
    read = 0
    try:
        with anyio.move_on_after(_BODY_TIME):
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    break
    except (httpx.HTTPError, httpx.StreamError):
        pass  # the status line is in: a broken (or already read) body changes nothing
    finally:
        await response.aclose()


def _flat(batches: Sequence[list[Outcome]]) -> list[Outcome]:
    return [outcome for batch in batches for outcome in batch]


def no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that stores nothing, for the owned client: a collector's
    ``Set-Cookie: sp=...`` must never be sent back (one network user id for every
    user of the process)."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def _describe(exc: BaseException) -> str:
    """``ConnectError: All connection attempts failed (Connection refused)``: the
    exception, and the operating system's reason found among its causes."""
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause: BaseException | None = exc
    for _ in range(8):
        cause = cause.__cause__ or cause.__context__ if cause is not None else None
        if isinstance(cause, OSError) and cause.errno:
            return f"{described} ({os.strerror(cause.errno)})"
    return described
